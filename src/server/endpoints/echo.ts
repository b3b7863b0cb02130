/**
 * echo: every DATA frame is published to the namespace, and every connection with an echo stream
 * there (the sender's own included) receives it. The EVENT frame is built once per publish with
 * the sender's stream id stamped by the server; `self: false` is applied by the client, which
 * knows its own stream ids.
 */
import { echoEventMeta, writeEchoEvent, type OpenEcho } from '../../protocol/echo.js'
import type { Kind } from '../../protocol/codec.js'
import type { DataFrame } from '../../protocol/frames.js'
import { topicOf } from '../brokers/types.js'
import type { Connection } from '../connection.js'
import type { OpenHandler, ServerContext, ServerStream } from '../context.js'

/** One echo stream. A class, not closures: an idle server holds thousands of these. */
class EchoStream implements ServerStream {
  /** The EVENT meta with this sender's id, made on the first publish (idle streams never pay for it). */
  private meta: Uint8Array | null = null

  constructor (private readonly conn: Connection, private readonly sid: number, readonly ns: string) {}

  private get ctx (): ServerContext { return this.conn.ctx }

  get topic (): string { return topicOf('echo', this.ns) }

  data ({ raw }: DataFrame): void | Promise<void> {
    this.meta ??= echoEventMeta(this.ns, this.conn.streamId(this.sid))
    return this.ctx.broker.publish(this.topic, writeEchoEvent(this.meta, { kind: raw.kind as Kind, bytes: raw.payload }))
  }

  close (): void {
    this.ctx.hub.unsubscribe(this.topic, this.conn)
  }
}

export const openEcho: OpenHandler<OpenEcho> = (ctx, conn, { sid, ns }) => {
  const stream = new EchoStream(conn, sid, ns)
  const open = (): EchoStream => {
    conn.opened(sid, { id: conn.streamId(sid) })
    return stream
  }
  const subscribed = ctx.hub.subscribe(stream.topic, conn)
  return subscribed instanceof Promise ? subscribed.then(open) : open()
}
