/**
 * Shared test helpers: a real server on an ephemeral 127.0.0.1 port, and waiting for events with
 * a deadline (a test that waits forever is a hang, not a failure).
 */
import { get as httpGet } from 'node:http'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import type { EventEmitter } from 'eventemitter3'
import { createServer, memoryBroker, redisBroker, type Broker, type ServerOptions, type Yard } from 'signalyard/server'
import { startRedis, type TestRedis } from './redis.js'
import { HEADER_SIZE } from '../src/protocol/codec.js'

/**
 * Which broker the endpoint tests run against: the in-memory default, or with
 * SIGNALYARD_TEST_BROKER=redis (npm test runs the endpoint files a second time so) a Redis broker
 * per yard, each with its own key prefix, on one redis-server per test process.
 */
export const TEST_BROKER = process.env.SIGNALYARD_TEST_BROKER === 'redis' ? 'redis' : 'memory'
let testRedis: Promise<TestRedis> | null = null
let yards = 0

/** A broker of the kind TEST_BROKER names, for a test that keeps it to look at what it holds. */
export interface TestBroker extends Broker {
  readonly kind: 'memory' | 'redis'
  /** The Redis keys under this broker's prefix, and the channels it subscribes to ([] for memory). */
  redisState: () => Promise<{ keys: string[], channels: string[] }>
}

/**
 * A broker honouring TEST_BROKER: the in-memory one, or a Redis broker with its own key prefix on
 * this process's test redis-server. Pass it to startYard({ broker }); close it after the yard.
 */
export async function testBroker (options: { sweepInterval?: number } = {}): Promise<TestBroker> {
  if (TEST_BROKER === 'memory') {
    return Object.assign(memoryBroker(options), { kind: 'memory' as const, redisState: async () => ({ keys: [], channels: [] }) })
  }
  const redis = await (testRedis ??= startRedis())
  const prefix = `test${++yards}:`
  const broker = redisBroker({ url: redis.url, prefix, ...options })
  const redisState = async (): Promise<{ keys: string[], channels: string[] }> => ({
    keys: await redis.keys(`${prefix}*`),
    channels: await redis.channels(`${prefix}*`)
  })
  return Object.assign(broker, { kind: 'redis' as const, redisState })
}

/**
 * Every key in this process's test redis-server matching `pattern` ([] when no test used Redis):
 * a [redis] run checks with it that its yard really keeps its state in Redis.
 */
export async function testRedisKeys (pattern = '*'): Promise<string[]> {
  return testRedis === null ? [] : await (await testRedis).keys(pattern)
}

/** A yard on 127.0.0.1 and a free port (on Redis when TEST_BROKER is 'redis' and no broker is given). */
export async function startYard (options: ServerOptions = {}): Promise<Yard> {
  if (TEST_BROKER === 'memory' || options.broker !== undefined) return await createServer({ port: 0, host: '127.0.0.1', ...options })
  const broker = await testBroker({ sweepInterval: options.limits?.kv?.sweepInterval })
  const yard = await createServer({ port: 0, host: '127.0.0.1', ...options, broker })
  const close = yard.close.bind(yard)
  let closing: Promise<void> | null = null
  return Object.assign(yard, { close: () => closing ??= close().then(async () => { await broker.close() }) })
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

type AnyEmitter = Pick<EventEmitter, 'once' | 'on' | 'off'>

/** The arguments of the next `event`, or a rejection after `ms`. */
export function next (emitter: AnyEmitter, event: string, ms = 2000): Promise<any[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { emitter.off(event, on); reject(new Error(`no '${event}' within ${ms} ms`)) }, ms)
    const on = (...args: any[]): void => { clearTimeout(timer); resolve(args) }
    emitter.once(event, on)
  })
}

/** The arguments of the next `count` events (first argument of each), or a rejection after `ms`. */
export function collect (emitter: AnyEmitter, event: string, count: number, ms = 2000): Promise<any[][]> {
  return new Promise((resolve, reject) => {
    const got: any[][] = []
    const timer = setTimeout(() => { emitter.off(event, on); reject(new Error(`only ${got.length}/${count} '${event}' within ${ms} ms`)) }, ms)
    const on = (...args: any[]): void => {
      got.push(args)
      if (got.length === count) { clearTimeout(timer); emitter.off(event, on); resolve(got) }
    }
    emitter.on(event, on)
  })
}

/** Poll `predicate` until it is true, or reject after `ms`. */
export async function until (predicate: () => boolean | Promise<boolean>, ms = 2000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`${what} not met within ${ms} ms`)
    await sleep(10)
  }
}

/** `promise`, or a rejection after `ms`: a hang is a failure, not a killed test file. */
export function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Every stream's ready(), within 2 s. */
export const readyAll = (...streams: Array<{ ready: () => Promise<void> }>): Promise<void[]> =>
  within(Promise.all(streams.map((s) => s.ready())), 2000, 'ready()')

/** Mark a promise awaited later as handled, so an earlier failure does not also crash the file. */
export function later<T> (promise: Promise<T>): Promise<T> {
  promise.catch(() => {})
  return promise
}

/** GET over a fresh connection (no keep-alive pool left behind). */
export function fetchText (url: string): Promise<{ status: number, type: string, body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body }))
    })
    req.on('error', reject)
    req.setTimeout(2000, () => req.destroy(new Error(`GET ${url} timed out`)))
  })
}

/** A port nothing listens on right now. */
export async function freePort (): Promise<number> {
  const server = createNetServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** A frame built by hand: header fields and raw meta bytes; `metaLen` may lie. */
export function rawFrame (type: number, id: number, kind: number, meta: Uint8Array, payload = new Uint8Array(0), metaLen = meta.length): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE + meta.length + payload.length)
  const view = new DataView(out.buffer)
  out[0] = type
  view.setUint32(1, id)
  out[5] = kind
  view.setUint32(6, metaLen)
  out.set(meta, HEADER_SIZE)
  out.set(payload, HEADER_SIZE + meta.length)
  return out
}

/** mulberry32: a small seeded PRNG (numbers in [0, 1)), so a failing randomized run can be replayed. */
export function seededRandom (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
