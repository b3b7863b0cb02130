/**
 * The HTTP side of a yard: the routes next to the WebSocket endpoint (GET /healthz, GET /metrics,
 * 426 on the WebSocket path and 404 elsewhere), the separate metrics server, and the small
 * helpers for listening, addresses, paths and ports.
 *
 * /healthz and /metrics are read-only: HEAD answers as GET does (status and headers, no body),
 * any other method gets 405 with `Allow: GET, HEAD`, so a probe configured with the wrong method
 * fails loudly instead of looking like a missing route.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { timingSafeEqual } from 'node:crypto'
import { SUBPROTOCOL } from '../protocol/frames.js'
import type { Logger } from './logger.js'
import type { Health } from './server.js'

/** What the routes serve. */
export interface Ops {
  health: () => Health
  metrics: () => Promise<string>
  log: Logger
  /** `Bearer <token>` required for /metrics (the `metrics.token` option), else null. */
  metricsToken: string | null
}

/** The methods the ops routes answer; HEAD is GET without the body (Node's response drops it). */
const READ_METHODS = 'GET, HEAD'

/** /healthz and /metrics (when `withMetrics`) as a handler: true when it answered the request. */
export function opsRoutes (ops: Ops): (req: IncomingMessage, res: ServerResponse, withMetrics: boolean) => boolean {
  const token = ops.metricsToken === null ? null : Buffer.from(`Bearer ${ops.metricsToken}`)
  return (req, res, withMetrics) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    const route = url.pathname === '/healthz' || (withMetrics && url.pathname === '/metrics')
    if (!route) return false
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain', allow: READ_METHODS }).end(`method not allowed: use ${READ_METHODS}\n`)
      return true
    }
    if (url.pathname === '/healthz') {
      const health = ops.health()
      res.writeHead(health.status === 'ok' ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(health))
      return true
    }
    if (token !== null && !sameBytes(Buffer.from(req.headers.authorization ?? ''), token)) {
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' }).end('unauthorized\n')
      return true
    }
    void ops.metrics().then(
      (text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text),
      (err: unknown) => {
        ops.log('error', 'metrics failed', { error: String(err) })
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n')
      })
    return true
  }
}

/** The request handler of the yard's own HTTP server: the ops routes, else 426 on `path` and 404 elsewhere. */
export function yardRoutes (
  serveOps: ReturnType<typeof opsRoutes>, metricsHere: boolean, path: string,
  /** Other routes (the compat endpoints' plain HTTP answers): true when they answered. */
  more: (req: IncomingMessage, res: ServerResponse) => boolean = () => false
): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    if (serveOps(req, res, metricsHere) || more(req, res)) return
    const url = new URL(req.url ?? '/', 'http://localhost')
    const upgradeHere = url.pathname === path
    res.writeHead(upgradeHere ? 426 : 404, { 'content-type': 'text/plain' })
      .end(upgradeHere ? `signalyard: connect with a WebSocket speaking subprotocol ${SUBPROTOCOL}\n` : 'not found\n')
  }
}

/** The separate metrics server (the `metrics.port` option): /healthz and /metrics, 404 elsewhere. */
export async function listenMetrics (serveOps: ReturnType<typeof opsRoutes>, port: number, host: string): Promise<Server> {
  const server = createHttpServer((req, res) => {
    if (!serveOps(req, res, true)) res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
  })
  await listen(server, port, host)
  return server
}

/** Equal bytes, compared in constant time for equal lengths (a metrics token). */
function sameBytes (a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b)
}

export function listen (server: Server, port: number, host: string | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err)
    server.once('error', onError)
    server.listen(port, host, () => {
      server.off('error', onError)
      resolve()
    })
  })
}

/** A host as it goes in a URL: the wildcard addresses as 127.0.0.1, IPv6 in brackets. */
export function urlHost (host: string | undefined): string {
  if (host === undefined || host === '' || host === '0.0.0.0' || host === '::') return '127.0.0.1'
  return host.includes(':') ? `[${host}]` : host
}

/** A URL path with a leading slash and no trailing one ('/' stays '/'). */
export function normalisePath (path: string): string {
  const withSlash = path.startsWith('/') ? path : `/${path}`
  return withSlash.length > 1 && withSlash.endsWith('/') ? withSlash.slice(0, -1) : withSlash
}

/** A port number from text: decimal digits only (Number() would take ' 80', '0x50', '8e1'); null if not one. */
export function parsePort (text: string): number | null {
  const port = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN
  return port >= 0 && port <= 65535 ? port : null
}

/** The PORT environment variable, else 3000. */
export function portFromEnv (): number {
  const env = process.env.PORT
  if (env === undefined || env === '') return 3000
  const port = parsePort(env)
  if (port === null) throw new TypeError(`PORT must be a port number, got ${JSON.stringify(env)}`)
  return port
}
