/**
 * The ICE servers a yard hands its clients (HELLO `iceServers`, and the ICE frame that refreshes
 * them): the operator's static list, the yard's own STUN responder (`stun:<host>:<port>`, host
 * being the name the client used to reach the yard, or `publicHost`), and TURN with ephemeral
 * credentials in the TURN REST form coturn checks with `use-auth-secret`:
 *
 *   username   = "<expiry, unix seconds>:<identity when it is a string or number, else the connection id>"
 *   credential = base64(HMAC-SHA1(secret, username))
 *
 * Credentials are minted per connection when it is admitted and again every `ttl / 2` (one sweep
 * for every connection, no timer each), so a connection always holds credentials with at least
 * half their life left. The secret stays in this module's closure: it is never logged, counted,
 * put in an error or sent anywhere.
 */
import { createHmac } from 'node:crypto'

/** One entry of RTCConfiguration.iceServers. */
export interface IceServer { urls: string | string[], username?: string, credential?: string }

/** TURN through coturn (or any server with TURN REST credentials). */
export interface TurnOptions {
  /** `turn:` / `turns:` URLs, e.g. `turn:turn.example.org:3478?transport=udp`. */
  urls: string[]
  /** The shared secret (coturn `static-auth-secret`). */
  secret: string
  /** Lifetime of a credential, in seconds (default 86400). */
  ttl?: number
}

export interface IceOptions {
  iceServers?: IceServer[]
  /** Port of the yard's STUN responder, when it runs. */
  stunPort?: number
  /** Host name clients should use for STUN (default: the Host header of their upgrade request). */
  publicHost?: string
  turn?: TurnOptions
}

/** Default TURN credential lifetime: one day (coturn's examples use the same). */
export const TURN_TTL = 86_400

/**
 * The TURN REST credential for `username` under `secret`.
 *
 * @example
 * turnCredential('s3cret', '1790000000:alice') // base64 of HMAC-SHA1
 */
export function turnCredential (secret: string, username: string): string {
  return createHmac('sha1', secret).update(username).digest('base64')
}

/**
 * The host part of a Host header (`name:port`, `[v6]:port`), without the port; null when absent
 * or not a plausible host (a DNS name or IPv4 address of at most 253 characters, or a bracketed
 * IPv6 address): the client chose it, and it goes into a URL (and, with TURN, is kept for the
 * connection's life), so nothing else is taken from it.
 */
export function hostOf (header: string | undefined): string | null {
  if (header === undefined) return null
  const host = header.startsWith('[') ? header.slice(0, header.indexOf(']') + 1) : header.split(':')[0]
  return host.length <= 253 && (/^[A-Za-z0-9.-]+$/.test(host) || /^\[[0-9A-Fa-f:.]+\]$/.test(host)) ? host : null
}

/** What a yard knows about ICE servers, and how it mints what each connection gets. */
export class Ice {
  /** Seconds a TURN credential lives; 0 without TURN. */
  readonly ttl: number
  private readonly mint: ((username: string) => string) | null
  private readonly turnUrls: string[]

  constructor (private readonly options: IceOptions, private readonly minted: () => void) {
    const { turn } = options
    this.ttl = turn === undefined ? 0 : turn.ttl ?? TURN_TTL
    this.turnUrls = turn?.urls ?? []
    // The secret is captured here and nowhere else (not kept on `options` reads after this).
    const secret = turn?.secret
    this.mint = secret === undefined ? null : (username) => turnCredential(secret, username)
  }

  /** Whether credentials expire, so connections need refreshing. */
  get refreshes (): boolean { return this.mint !== null }

  /**
   * The iceServers of one connection: `host` is the Host its upgrade request named, `who` its
   * identity (or null) and `conn` its id; `now` in ms since the epoch (TURN expiry is wall-clock
   * time, as coturn reads it).
   */
  for (host: string | null, who: unknown, conn: string, now = Date.now()): IceServer[] {
    const out: IceServer[] = [...(this.options.iceServers ?? [])]
    const stunHost = this.options.publicHost ?? host
    if (this.options.stunPort !== undefined && stunHost !== null) out.push({ urls: `stun:${stunHost}:${this.options.stunPort}` })
    if (this.mint !== null && this.turnUrls.length > 0) {
      const name = typeof who === 'string' || typeof who === 'number' ? String(who) : conn
      const username = `${Math.floor(now / 1000) + this.ttl}:${name}`
      out.push({ urls: this.turnUrls, username, credential: this.mint(username) })
      this.minted()
    }
    return out
  }
}

/** A TURN option that cannot work is refused when the yard starts, not discovered by its users. */
export function checkTurn ({ urls, secret, ttl }: TurnOptions): void {
  if (!Array.isArray(urls) || urls.length === 0 || !urls.every((u) => typeof u === 'string' && /^turns?:/.test(u))) {
    throw new TypeError('turn.urls must be a non-empty list of turn: or turns: URLs')
  }
  if (typeof secret !== 'string' || secret === '') throw new TypeError('turn.secret must be a non-empty string')
  // At least a second: renewals come every ttl / 2 to every connection.
  if (ttl !== undefined && !(Number.isInteger(ttl) && ttl >= 1)) throw new TypeError('turn.ttl must be a whole number of seconds, at least 1')
}

/** What the refresher needs of a connection. */
export interface Refreshable { readonly id: string, send: (frame: Uint8Array) => void }

/**
 * Keeps the TURN credentials of every admitted connection fresh: one sweep every `ttl / 8`
 * (between 100 ms and a minute) sends new iceServers (an ICE frame) to each connection whose
 * credentials are half spent. Only a yard with TURN has one.
 */
export class IceRefresher<C extends Refreshable> {
  private readonly held = new Map<C, { host: string | null, who: unknown, due: number }>()
  private readonly timer: ReturnType<typeof setInterval>

  constructor (private readonly ice: Ice, private readonly write: (iceServers: IceServer[]) => Uint8Array) {
    const half = ice.ttl * 500
    this.timer = setInterval(() => this.sweep(), Math.min(60_000, Math.max(100, half / 4)))
    this.timer.unref()
  }

  /** `conn` was admitted and got credentials now. */
  add (conn: C, host: string | null, who: unknown): void {
    this.held.set(conn, { host, who, due: performance.now() + this.ice.ttl * 500 })
  }

  /** `conn` closed. */
  forget (conn: C): void {
    this.held.delete(conn)
  }

  close (): void {
    clearInterval(this.timer)
    this.held.clear()
  }

  private sweep (): void {
    const t = performance.now()
    for (const [conn, entry] of this.held) {
      if (entry.due > t) continue
      entry.due = t + this.ice.ttl * 500
      conn.send(this.write(this.ice.for(entry.host, entry.who, conn.id)))
    }
  }
}
