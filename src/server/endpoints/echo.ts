/**
 * echo: every DATA frame is published to the namespace, and every connection with an echo stream
 * there (the sender's own included) receives it. The EVENT frame is built once per publish with
 * the sender's stream id stamped by the server; `self: false` is applied by the client, which
 * knows its own stream ids.
 */
import { echoEventMeta, writeEchoEvent } from '../../protocol/events.js'
import type { OpenEcho } from '../../protocol/frames.js'
import { topicOf } from '../brokers/types.js'
import type { OpenHandler } from '../connection.js'

export const openEcho: OpenHandler<OpenEcho> = (ctx, conn, { sid, ns }) => {
  const topic = topicOf('echo', ns)
  const id = `${conn.id}.${sid}`
  const meta = echoEventMeta(ns, id)
  const stream = {
    ns,
    data: ({ raw }: { raw: { kind: number, payload: Uint8Array } }) => {
      const published = ctx.broker.publish(topic, writeEchoEvent(meta, { kind: raw.kind as 0, bytes: raw.payload }))
      if (published instanceof Promise) return published
    },
    close: () => ctx.hub.unsubscribe(topic, conn)
  }
  const subscribed = ctx.hub.subscribe(topic, conn)
  const open = (): typeof stream => {
    conn.opened(sid, { id })
    return stream
  }
  return subscribed instanceof Promise ? subscribed.then(open) : open()
}
