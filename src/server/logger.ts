/**
 * Structured logging through the `logger` option: a function `(level, message, fields)`, or any
 * object with `info`/`warn`/`error` methods (console, pino). Silent by default.
 */
export type LogLevel = 'info' | 'warn' | 'error'
export type Logger = (level: LogLevel, message: string, fields?: Record<string, unknown>) => void
export type LoggerOption = Logger | Partial<Record<LogLevel, (...args: unknown[]) => void>>

export const silent: Logger = () => {}

export function toLogger (option: LoggerOption | undefined): Logger {
  if (option === undefined) return silent
  if (typeof option === 'function') return option
  return (level, message, fields) => {
    const method = option[level]
    if (method !== undefined) fields === undefined ? method.call(option, message) : method.call(option, message, fields)
  }
}
