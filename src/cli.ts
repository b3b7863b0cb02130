/**
 * The `signalyard` command: runs a server until SIGINT/SIGTERM.
 *
 *   signalyard [--port N] [--host H] [--path P] [--redis URL] [--metrics-port N] [--metrics-host H]
 *              [--stun-port N] [--turn-url URL]... [--turn-secret S] [--turn-ttl SECONDS] [--public-host H]
 *              [--y-webrtc-path P|off] [--peerjs-path P|off] [--peerjs-key K] [--peerjs-discovery]
 *   signalyard --version | --help
 *
 * Flags win over the environment (PORT, HOST, REDIS_URL, METRICS_PORT, METRICS_HOST,
 * METRICS_TOKEN, STUN_PORT, TURN_URL (comma-separated), TURN_SECRET, TURN_TTL, PUBLIC_HOST). Prints one line: the URL to reach it from this machine and the address it is
 * bound to (all interfaces unless --host). Exit codes: 0 after a graceful stop (or after --version/--help), 1 when the server cannot start (busy port), 2 on a
 * bad flag.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { createServer, redisBroker, type TurnOptions, type Yard } from './server/index.js'
import { parsePort } from './server/server.js'

const USAGE = `usage: signalyard [--port N] [--host H] [--path P] [--redis URL] [--metrics-port N] [--metrics-host H]
       signalyard --version | --help

  --port N      port to listen on (env PORT, default 3000; 0 picks a free port)
  --host H      interface to listen on (env HOST, default all interfaces)
  --path P      URL path of the WebSocket endpoint (default /)
  --redis URL   share state with other servers through Redis (env REDIS_URL)
  --metrics-port N  serve /metrics on this port only, not on the client port (env METRICS_PORT)
  --metrics-host H  interface of the metrics port (env METRICS_HOST, default 127.0.0.1)
                env METRICS_TOKEN: /metrics answers only 'Authorization: Bearer <token>'
  --stun-port N     answer STUN Binding requests on this UDP port (env STUN_PORT; usually 3478; off by default)
  --turn-url URL    a TURN server URL handed to clients (repeatable; env TURN_URL, comma-separated),
                e.g. turn:turn.example.org:3478?transport=udp
  --turn-secret S   coturn's static-auth-secret: clients get TURN REST credentials (env TURN_SECRET;
                prefer the environment: flags show in process lists)
  --turn-ttl N      lifetime of a TURN credential in seconds (env TURN_TTL, default 86400)
  --public-host H   host name clients use for the yard's STUN (env PUBLIC_HOST; default: the one they connected to)
  --y-webrtc-path P   where unmodified y-webrtc clients connect (default /y-webrtc; off to switch it off)
  --peerjs-path P     where unmodified PeerJS clients connect, their \`path\` option (default /peerjs; off to switch it off)
  --peerjs-key K      the PeerJS key clients must give (default peerjs)
  --peerjs-discovery  answer GET <peerjs path>/<key>/peers (off by default, as peerjs-server)
  --version, -v     print the version of signalyard and exit
  --help, -h        print this help`

function usageError (message: string): never {
  process.stderr.write(`signalyard: ${message}\n\n${USAGE}\n`)
  process.exit(2)
}

function portOption (value: string, from: string): number {
  return parsePort(value) ?? usageError(`${from} must be a port number from 0 to 65535, got ${JSON.stringify(value)}`)
}

async function main (): Promise<void> {
  let values: {
    port?: string, host?: string, path?: string, redis?: string, 'metrics-port'?: string, 'metrics-host'?: string,
    'stun-port'?: string, 'turn-url'?: string[], 'turn-secret'?: string, 'turn-ttl'?: string, 'public-host'?: string, help?: boolean,
    'y-webrtc-path'?: string, 'peerjs-path'?: string, 'peerjs-key'?: string, 'peerjs-discovery'?: boolean, version?: boolean
  }
  try {
    ({ values } = parseArgs({
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        path: { type: 'string' },
        redis: { type: 'string' },
        'metrics-port': { type: 'string' },
        'metrics-host': { type: 'string' },
        'stun-port': { type: 'string' },
        'turn-url': { type: 'string', multiple: true },
        'turn-secret': { type: 'string' },
        'turn-ttl': { type: 'string' },
        'public-host': { type: 'string' },
        'y-webrtc-path': { type: 'string' },
        'peerjs-path': { type: 'string' },
        'peerjs-key': { type: 'string' },
        'peerjs-discovery': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' }
      },
      strict: true,
      allowPositionals: false
    }))
  } catch (err) {
    usageError((err as Error).message)
  }
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`)
    return
  }
  if (values.version === true) {
    process.stdout.write(`${packageVersion()}\n`)
    return
  }
  const port = values.port !== undefined
    ? portOption(values.port, '--port')
    : portOption(process.env.PORT ?? '3000', 'PORT')
  const host = values.host ?? (process.env.HOST !== '' ? process.env.HOST : undefined)
  const redis = values.redis ?? (process.env.REDIS_URL !== '' ? process.env.REDIS_URL : undefined)
  const broker = redis === undefined ? undefined : redisBroker({ url: redis })
  const env = (name: string): string | undefined => process.env[name] === '' ? undefined : process.env[name]
  const metricsPortText = values['metrics-port'] ?? env('METRICS_PORT')
  const metrics = {
    port: metricsPortText === undefined ? undefined : portOption(metricsPortText, values['metrics-port'] !== undefined ? '--metrics-port' : 'METRICS_PORT'),
    host: values['metrics-host'] ?? env('METRICS_HOST'),
    token: env('METRICS_TOKEN')
  }
  const turn = turnOption(values['turn-url'] ?? env('TURN_URL')?.split(',').map((u) => u.trim()).filter((u) => u !== ''),
    values['turn-secret'] ?? env('TURN_SECRET'), values['turn-ttl'] ?? env('TURN_TTL'))
  const publicHost = values['public-host'] ?? env('PUBLIC_HOST')
  const stunPortText = values['stun-port'] ?? env('STUN_PORT')
  const stun = stunPortText === undefined ? undefined : { port: portOption(stunPortText, values['stun-port'] !== undefined ? '--stun-port' : 'STUN_PORT') }

  const yWebrtcPath = values['y-webrtc-path']
  const peerjsPath = values['peerjs-path']
  for (const [flag, v] of [['--y-webrtc-path', yWebrtcPath], ['--peerjs-path', peerjsPath]] as const) {
    if (v !== undefined && v !== 'off' && !v.startsWith('/')) usageError(`${flag} is a path starting with / (or off), got ${JSON.stringify(v)}`)
  }
  const compat = {
    yWebrtc: yWebrtcPath === 'off' ? false as const : { path: yWebrtcPath },
    peerjs: peerjsPath === 'off' ? false as const : { path: peerjsPath, key: values['peerjs-key'], discovery: values['peerjs-discovery'] === true }
  }

  let yard: Yard
  try {
    yard = await createServer({ port, host, path: values.path, logger: consoleLogger, broker, metrics, turn, publicHost, stun, compat })
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    // dgram reports its bind (the STUN port), net its listen (the client port).
    const where = e.syscall === 'bind' && stun !== undefined ? `UDP port ${stun.port} (STUN)` : `${host ?? 'all interfaces'} port ${port}`
    if (broker !== undefined) await broker.close()
    if (e.code === 'EADDRINUSE') process.stderr.write(`signalyard: ${where} is already in use; pick another with ${e.syscall === 'bind' ? '--stun-port or STUN_PORT' : '--port or PORT'}\n`)
    else if (e.code === 'EACCES') process.stderr.write(`signalyard: not allowed to listen on ${where}\n`)
    else process.stderr.write(`signalyard: cannot start: ${e.message}\n`)
    process.exit(1)
  }
  const bound = host === undefined ? `${yard.address}, all interfaces` : yard.address
  const metricsAt = (yard.metricsUrl === null ? '' : `; metrics on ${yard.metricsUrl}`) + (yard.stunPort === null ? '' : `; STUN on UDP port ${yard.stunPort}`)
  process.stdout.write(`signalyard listening on ${yard.url} (bound to ${bound}${metricsAt})\n`)

  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    process.stderr.write(`signalyard: ${signal}, closing\n`)
    const force = setTimeout(() => process.exit(1), 5000)
    force.unref()
    yard.close().then(async () => { await broker?.close() }).then(() => process.exit(0), () => process.exit(1))
  }
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGTERM', () => stop('SIGTERM'))
}

/**
 * The version in the package.json next to this file's folder: dist/cli.js (built) and src/cli.ts
 * (run from source) are both one level below it, and an installed package keeps that layout.
 */
function packageVersion (): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

/** TURN from flags/environment: URLs and a secret together, or neither. */
function turnOption (urls: string[] | undefined, secret: string | undefined, ttlText: string | undefined): TurnOptions | undefined {
  if ((urls?.length ?? 0) === 0 && secret === undefined) return undefined
  if (urls === undefined || urls.length === 0) usageError('--turn-secret needs at least one --turn-url')
  if (secret === undefined) usageError('--turn-url needs --turn-secret (or TURN_SECRET)')
  for (const url of urls) if (!/^turns?:/.test(url)) usageError(`--turn-url must start with turn: or turns:, got ${JSON.stringify(url)}`)
  const ttl = ttlText === undefined ? undefined : Number(ttlText)
  if (ttl !== undefined && !(Number.isInteger(ttl) && ttl >= 60)) usageError(`--turn-ttl must be a whole number of seconds, at least 60, got ${JSON.stringify(ttlText)}`)
  return { urls, secret, ttl }
}

/**
 * The yard's log on stderr (stdout stays the one listening line). `info` is there too: the server
 * logs few info lines, and the one an operator waits for is Redis coming back after a loss.
 */
const logLine = (message: unknown, fields?: unknown): void => { process.stderr.write(`signalyard: ${String(message)}${fields === undefined ? '' : ` ${JSON.stringify(fields)}`}\n`) }
const consoleLogger = { info: logLine, warn: logLine, error: logLine }

void main()
