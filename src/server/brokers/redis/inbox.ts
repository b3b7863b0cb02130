/**
 * This process's inbox channel (`i:<pid>`): how scripts and other processes reach a stream held
 * here — directed frames and markers for claims, relay data, acks, pairing and close notices.
 * Messages are RECORD.inbox (kind, address, body); the parts that own the addresses register a
 * handler per kind (the INBOX table in keys.ts says what each carries).
 */
import type { Context } from './context.js'
import { ignore } from './context.js'
import type { InboxKind } from './keys.js'
import { pack, unpack } from './lua.js'

/** Handles one kind of inbox message for the stream at `addr`. */
export type InboxHandler = (addr: string, body: Buffer) => void

/** Dispatches this process's inbox by kind, and sends to the inboxes of others. */
export class Inbox {
  private readonly handlers = new Map<string, InboxHandler>()

  constructor (private readonly ctx: Context) {}

  /** Messages of `kind` go to `handler`. */
  on (kind: InboxKind, handler: InboxHandler): void {
    this.handlers.set(kind, handler)
  }

  /** Subscribe to this process's inbox channel. */
  listen (): Promise<void> {
    return this.ctx.subscribe(this.ctx.keys.inbox(this.ctx.pid), (message) => {
      const [kind, addr, body] = unpack(message)
      this.handlers.get(kind.toString())?.(addr.toString(), body)
    })
  }

  /** Send a message to the stream at `addr` (in another process) through its process's inbox. */
  send (addr: string, kind: InboxKind, body: string | Uint8Array): void {
    this.ctx.cmd.publish(this.ctx.keys.inboxOf(addr), pack(kind, addr, body)).then(ignore, ignore)
  }
}
