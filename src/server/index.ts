/**
 * `signalyard/server`: the server, the broker interface and the built-in brokers.
 *
 * @example
 * import { createServer } from 'signalyard/server'
 * const yard = await createServer({ port: 3000 })
 */
export { createServer } from './server.js'
export type { ServerOptions, Yard, Health } from './server.js'
export { memoryBroker } from './brokers/memory.js'
export type { MemoryBrokerOptions } from './brokers/memory.js'
export { redisBroker } from './brokers/redis.js'
export type { RedisBrokerOptions } from './brokers/redis.js'
export type {
  Broker, RelayLink, RelaySink, RelayOpened, KvSetRequest, TopicHandler,
  Claim, ClaimRequest, ClaimSink, ClaimSpace, Claimed, Member, MemberPage
} from './brokers/types.js'
export type { KvChange, KvPage, KvSnapshot } from '../kv/model.js'
export { DEFAULTS } from './limits.js'
export type { Limits, LimitsOption } from './limits.js'
export type { Logger, LoggerOption, LogLevel } from './logger.js'
export { SignalyardError, ERROR_CODES } from '../protocol/errors.js'
export type { ErrorCode } from '../protocol/errors.js'
