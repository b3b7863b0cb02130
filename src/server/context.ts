/**
 * What the server's parts share: the context every connection and endpoint is given, the shape
 * of a stream an endpoint keeps (ServerStream), how an endpoint opens one (OpenHandler), and the
 * WebSocket close codes the server uses. Types and constants only: no behaviour lives here.
 */
import type { SignalyardError } from '../protocol/errors.js'
import { CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED, type AnyRequest, type DataFrame, type Endpoint, type OpenFrame } from '../protocol/frames.js'
import type { Broker } from './brokers/types.js'
import type { Budgets } from './budget.js'
import type { Connection } from './connection.js'
import type { Hub } from './hub.js'
import type { Limits } from './limits.js'
import type { Logger } from './logger.js'
import type { CompatEndpoint, Metrics } from './metrics.js'

/**
 * Why a stream ended: `closed` by the client's CLOSE or by the server (CLOSED), or `gone` because
 * its socket went away without closing it (peers/signal keep their id for `peers.grace` then).
 */
export type StreamEnd = 'closed' | 'gone'

/**
 * What a stream's endpoint keeps on the server; the connection routes frames to it. Every
 * endpoint's stream is a class (an idle server holds thousands: no closures per stream).
 */
export interface ServerStream {
  readonly ns: string
  /** Set by the connection when the stream opens: requests of another endpoint are refused. */
  ep?: Endpoint
  data? (frame: DataFrame): void | Promise<void>
  /**
   * A REQUEST. The connection passes only requests whose op belongs to the stream's endpoint
   * (REQUEST_OPS), so a handler may declare its endpoint's requests alone (method syntax allows
   * that narrower parameter).
   */
  request? (frame: AnyRequest): void | Promise<void>
  /** Release what the stream holds (`end` absent: `closed`); the connection has already forgotten it. */
  close (end?: StreamEnd): void
  /** The server ends the stream with `error` (a relay stream: on both sides, with its code). */
  abort? (error: SignalyardError): void
}

/** Everything an endpoint may use. */
export interface ServerContext {
  readonly broker: Broker
  readonly hub: Hub
  readonly limits: Limits
  readonly log: Logger
  readonly metrics: Metrics
  /** Open streams per namespace on this server (so /healthz counts namespaces in O(1)). */
  readonly namespaces: Map<string, number>
  /** Server-wide budgets (limits.total): take before holding bytes, give back when letting go. */
  readonly budgets: Budgets
  /** The connection closed: the server drops it from its table. */
  readonly forget: (conn: Connection) => void
  /** The server's authorize option: may this identity open a stream of `endpoint` in `namespace`? */
  readonly authorize?: (identity: unknown, namespace: string, endpoint: Endpoint | CompatEndpoint) => boolean | Promise<boolean>
}

/**
 * Opens a stream of one endpoint: answers OPENED itself (conn.opened) and returns the stream, or
 * throws a SignalyardError, which the connection turns into CLOSED with its code.
 */
export type OpenHandler<F extends OpenFrame = OpenFrame> =
  (ctx: ServerContext, conn: Connection, frame: F) => ServerStream | Promise<ServerStream>

/** One OpenHandler per endpoint of the protocol (a new endpoint does not compile until it has one). */
export type Endpoints = { [E in Endpoint]: OpenHandler<Extract<OpenFrame, { ep: E }>> }

/** WebSocket close codes the server uses. */
export const CloseCode = { Normal: 1000, GoingAway: 1001, Policy: 1008, TooBig: 1009, Internal: 1011, ServiceRestart: 1012, TryAgainLater: 1013, Unauthorized: CLOSE_UNAUTHORIZED, Forbidden: CLOSE_FORBIDDEN } as const
