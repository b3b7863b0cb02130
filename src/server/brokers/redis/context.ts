/**
 * What the parts of the Redis broker share: its two connections, the yard's key names, this
 * process's id and the addresses it hands out, the subscriber's channel table, and the small
 * helpers every part uses (script errors as coded errors, a no-op catch).
 */
import { Redis, ReplyError } from 'ioredis'
import { nanoid } from 'nanoid'
import { SignalyardError, type ErrorCode } from '../../../protocol/errors.js'
import { Keys } from './keys.js'
import { defineScripts, type ScriptFn, type ScriptSource } from './lua.js'

/** The connections, names and ids of one Redis broker, shared by its parts. */
export class Context {
  /** This process's id: its inbox is `i:<pid>` and its addresses start `<pid>/`. */
  readonly pid = nanoid(10)
  readonly keys: Keys
  /**
   * Commands. They never wait for a connection and are never replayed on a new one: state from
   * before a loss must not land in a Redis that may have restarted empty.
   */
  readonly cmd: Redis
  /** The subscriber connection (resubscribes by itself after a reconnect). */
  readonly sub: Redis
  /** channel (as bytes, latin1) → what its messages go to. */
  private readonly channels = new Map<string, (message: Buffer) => void>()
  private counter = 0

  constructor (readonly url: string, prefix: string) {
    this.keys = new Keys(prefix)
    this.cmd = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, autoResendUnfulfilledCommands: false, lazyConnect: true, retryStrategy: retry })
    this.sub = new Redis(url, { autoResubscribe: true, maxRetriesPerRequest: null, lazyConnect: true, retryStrategy: retry })
    this.sub.on('messageBuffer', (channel: Buffer, message: Buffer) => this.channels.get(channel.toString('latin1'))?.(message))
  }

  /** A new address of this process (a relay side or a claim's token). */
  nextAddr (): string { return `${this.pid}/${(++this.counter).toString(36)}` }
  /** Whether an address belongs to this process. */
  isLocal (addr: string): boolean { return addr.startsWith(`${this.pid}/`) }

  /** Define scripts on the command connection; a runner per name. */
  define<T extends Record<string, ScriptSource>> (scripts: T): Record<keyof T, ScriptFn> {
    return defineScripts(this.cmd, scripts)
  }

  /** Send a channel's messages to `handler`. */
  subscribe (channel: string, handler: (message: Buffer) => void): Promise<void> {
    this.channels.set(Buffer.from(channel).toString('latin1'), handler)
    return this.sub.subscribe(channel).then(() => {})
  }

  unsubscribe (channel: string): Promise<void> {
    this.channels.delete(Buffer.from(channel).toString('latin1'))
    return this.sub.unsubscribe(channel).then(() => {})
  }

  /** Channels subscribed (for tables()). */
  get channelCount (): number { return this.channels.size }

  /** Close both connections. */
  async quit (): Promise<void> {
    await Promise.all([this.cmd.quit().catch(ignore), this.sub.quit().catch(ignore)])
    this.cmd.disconnect()
    this.sub.disconnect()
  }
}

/** Reconnect after 50 ms, growing to 2 s; never give up. */
function retry (times: number): number {
  return Math.min(2000, 50 * 2 ** Math.min(times, 6))
}

/** For promises whose failure changes nothing (the broker learns of a lost Redis by its events). */
export function ignore (): void {}

/** What each refusal a script may return (`redis.error_reply('<code>')`) means. */
const REFUSALS: Partial<Record<ErrorCode, string>> = {
  'too-many-keys': 'the namespace holds the most keys it may',
  'quota-exceeded': 'the namespace or the yard holds as many KV bytes as it may',
  'peer-id-taken': 'the id is held by another client',
  'too-many-peers': 'the namespace holds the most ids it may',
  'relay-token-in-use': 'these relay tokens are in use'
}

/** A script's refusal as the coded error it stands for; other errors as they are. */
export function coded (err: unknown): unknown {
  if (err instanceof ReplyError) {
    // Redis puts ERR before a script's error_reply text.
    const code = (err as Error).message.replace(/^ERR /, '').trim() as ErrorCode
    if (Object.hasOwn(REFUSALS, code)) return new SignalyardError(code, REFUSALS[code])
  }
  return err
}
