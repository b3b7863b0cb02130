/**
 * Whether the Redis broker serves, and whether the other processes know it is alive.
 *
 * - Up: both connections ready, the inbox subscribed, and this process listed in `procs` by its
 *   first heartbeat. Watchers hear every change; `ready` settles on the first.
 * - Each process beats every `heartbeat` ms and reaps the processes that stopped beating (their
 *   ids leave, their relay sides close), so nothing a dead process held outlives it.
 * - When Redis is lost (or the others reaped this process after a stall), what this process held
 *   may be gone: every local relay side and id is dropped (`drop`) and the watchers are told (the
 *   server closes its sockets and refuses new ones until Redis is back). On the way back, what
 *   survived of this process in Redis is removed first, and the watchers hear how long it was
 *   down ('redis recovered after 312 ms'): the server logs it at `info`, next to the `warn` of the loss.
 */
import { ignore, type Context } from './context.js'
import type { Inbox } from './inbox.js'
import { LIVENESS_SCRIPTS } from './liveness.lua.js'

/** Availability and heartbeats of one Redis broker. */
export class Liveness {
  private readonly run
  private upNow = false
  private lost = false
  private closing = false
  /** Set once the inbox is subscribed: the broker serves nothing before. */
  private started = false
  /** A reconnect is being set up (cleaning what this process left in Redis, first heartbeat). */
  private recovering = false
  private lastError = ''
  /** While down after serving: since when (performance.now()) and whether the others reaped it (Redis stayed); else null. */
  private down: { since: number, reaped: boolean } | null = null
  private readonly watchers = new Set<(up: boolean, reason: string) => void>()
  private readyResolve: () => void = () => {}
  private readyReject: (err: Error) => void = () => {}
  /** Settles once the broker is first up (rejects when it cannot connect at all). */
  readonly ready: Promise<void>
  private readonly beat: ReturnType<typeof setInterval>

  /**
   * @param drop forgets every relay side and id of this process (Redis was lost).
   */
  constructor (private readonly ctx: Context, private readonly deadAfter: number, heartbeat: number, private readonly drop: () => void) {
    this.run = ctx.define(LIVENESS_SCRIPTS)
    this.ready = new Promise<void>((resolve, reject) => { this.readyResolve = resolve; this.readyReject = reject })
    this.ready.catch(() => {})
    const onLost = (): void => this.reset(this.lastError === '' ? 'connection to Redis lost' : this.lastError)
    for (const client of [ctx.cmd, ctx.sub]) {
      client.on('error', (err: Error) => { this.lastError = err.message })
      client.on('close', onLost)
      client.on('ready', () => this.onReady())
    }
    this.beat = setInterval(() => this.onBeat(), heartbeat)
    this.beat.unref?.()
  }

  /** Whether the broker serves now. */
  get up (): boolean { return this.upNow }

  /** Connect both clients and listen on the inbox; ready settles when the first beat is in. */
  start (inbox: Inbox): void {
    const start = async (): Promise<void> => {
      await Promise.all([this.ctx.cmd.connect(), this.ctx.sub.connect()])
      await inbox.listen()
      this.started = true
      this.onReady()
    }
    start().catch((err: Error) => {
      const reason = this.lastError === '' ? err.message : this.lastError
      this.readyReject(new Error(`cannot connect to Redis at ${this.ctx.url}: ${reason}`))
    })
  }

  /** Broker.watch: be told when the broker goes down and comes back; returns an unwatch. */
  watch (watcher: (up: boolean, reason: string) => void): () => void {
    this.watchers.add(watcher)
    return () => { this.watchers.delete(watcher) }
  }

  private setUp (next: boolean, reason: string): void {
    if (this.upNow === next) return
    this.upNow = next
    for (const watcher of this.watchers) watcher(next, reason)
  }

  /** What this process held in Redis may be gone: drop it all and tell the server (it closes its sockets). */
  private reset (reason: string, reaped = false): void {
    if (this.closing || !this.upNow) return
    this.lost = true
    this.down = { since: performance.now(), reaped }
    this.drop()
    this.setUp(false, reason)
  }

  private onReady (): void {
    const { cmd, sub, keys, pid } = this.ctx
    if (!this.started || this.closing || this.recovering || this.upNow || cmd.status !== 'ready' || sub.status !== 'ready') return
    this.recovering = true
    // After a loss, remove whatever of this process survived in Redis (its sockets were closed).
    const cleaned = this.lost ? this.run.syLeave(keys.procs, keys.prefix, pid, '0') : Promise.resolve()
    cleaned
      .then(() => this.run.syBeat(keys.procs, pid, this.deadAfter))
      .then(() => { this.readyResolve(); this.setUp(true, this.backReason()) })
      .catch((err: Error) => { this.lastError = err.message })
      .finally(() => { this.recovering = false })
  }

  /** Why the broker is up: first connected, or back after a loss (and how long it was down). */
  private backReason (): string {
    const down = this.down
    this.down = null
    if (down === null) return 'connected to Redis'
    const ms = Math.round(performance.now() - down.since)
    return down.reaped ? `rejoined the yard after ${ms} ms (reaped after a stall)` : `redis recovered after ${ms} ms`
  }

  private onBeat (): void {
    // Down: try to come back (a recovery that failed without a reconnect is retried here).
    if (!this.upNow) return this.onReady()
    const { keys, pid } = this.ctx
    // One script beats and, when this process was still listed, reaps the processes that stopped.
    this.run.syBeat(keys.procs, pid, this.deadAfter, keys.prefix).then((added) => {
      // Not listed any more: this process stalled past its deadline and the others reaped it.
      // What it serves (ids, relay sides) may belong to others now: start over, like a lost Redis.
      if (Number(added) === 1) this.reset('this server was reaped by the others after a stall', true)
    }).catch(ignore)
  }

  /** Stop beating (the broker is closing); false when it was closing already. */
  stop (): boolean {
    if (this.closing) return false
    this.closing = true
    clearInterval(this.beat)
    return true
  }

  /**
   * Leave the yard (after stop): claims still in their grace period are handed to the other
   * processes (they remove them when the grace ends); the last process removes everything.
   */
  async leave (): Promise<void> {
    const { keys, pid } = this.ctx
    if (this.upNow) await this.run.syLeave(keys.procs, keys.prefix, pid, '1').catch(ignore)
  }

  /** Down for good (closed): no watcher is told. */
  closed (): void { this.upNow = false }
}
