/**
 * `signalyard/server`: the server, the broker interface and the built-in brokers.
 *
 * @example
 * import { createServer } from 'signalyard/server'
 * const yard = await createServer({ port: 3000 })
 */
export { createServer } from './server.js'
export type { ServerOptions, Yard, Health } from './server.js'
export type { PeerMeta, YardKv } from './api.js'
export { turnCredential } from './ice.js'
export type { IceServer, TurnOptions } from './ice.js'
export { memoryBroker } from './brokers/memory.js'
export type { MemoryBrokerOptions } from './brokers/memory.js'
export { redisBroker } from './brokers/redis/index.js'
export type { RedisBrokerOptions } from './brokers/redis/index.js'
export type {
  Broker, RelayLink, RelaySink, RelayOpened, BrokerKvSet, BrokerKvEntry, TopicHandler,
  Claim, BrokerClaimRequest, ClaimSink, ClaimSpace, Claimed, BrokerMember, MemberPage
} from './brokers/types.js'
import type { BrokerClaimRequest, BrokerKvSet, BrokerMember } from './brokers/types.js'
/** @deprecated the name before 0.2: use `BrokerKvSet`. */
export type KvSetRequest = BrokerKvSet
/** @deprecated the name before 0.2: use `BrokerClaimRequest`. */
export type ClaimRequest = BrokerClaimRequest
/** @deprecated the name before 0.2: use `BrokerMember`. */
export type Member = BrokerMember
export type { KvChange, KvPage, KvSnapshot } from '../kv/model.js'
export { DEFAULTS } from './limits.js'
export type { Limits, LimitsOption } from './limits.js'
export type { Logger, LoggerOption, LogLevel } from './logger.js'
export { SignalyardError, ERROR_CODES } from '../protocol/errors.js'
export type { ErrorCode } from '../protocol/errors.js'
