/**
 * Structured logging through the `logger` option: a function `(level, message, fields)`, or any
 * object with `info`/`warn`/`error` methods (console, pino). Silent by default.
 */
export type LogLevel = 'info' | 'warn' | 'error'
export type Logger = (level: LogLevel, message: string, fields?: Record<string, unknown>) => void
export type LoggerOption = Logger | Partial<Record<LogLevel, (...args: unknown[]) => void>>

export const silent: Logger = () => {}

/**
 * The `logger` option as a Logger that never throws: a logger that fails (a broken transport, a
 * bug in the app's function) loses that line, never the connection being served or the process.
 */
export function toLogger (option: LoggerOption | undefined): Logger {
  if (option === undefined) return silent
  const write: Logger = typeof option === 'function'
    ? option
    : (level, message, fields) => {
        const method = option[level]
        if (method !== undefined) fields === undefined ? method.call(option, message) : method.call(option, message, fields)
      }
  return (level, message, fields) => {
    try {
      write(level, message, fields)
    } catch {
      // nowhere left to report it
    }
  }
}
