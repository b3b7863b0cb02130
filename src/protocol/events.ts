/**
 * EVENT frames: what the server broadcasts to every connection subscribed to a namespace. They are
 * addressed by endpoint and namespace (not by stream id), so one encoding serves every receiver.
 */
import { writeFrame, type EncodedPayload, HEADER_SIZE } from './codec.js'
import { FrameType } from './frames.js'
import type { KvChange } from '../kv/model.js'

const encoder = new TextEncoder()

/**
 * The meta bytes of an echo EVENT for one sender, computed once when its stream opens so that a
 * publish only copies header, meta and payload into one buffer.
 */
export function echoEventMeta (ns: string, from: string): Uint8Array {
  return encoder.encode(JSON.stringify({ ep: 'echo', ns, from }))
}

/** Frame one echo publish; `meta` comes from echoEventMeta. */
export function writeEchoEvent (meta: Uint8Array, payload: EncodedPayload): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE + meta.length + payload.bytes.length)
  const view = new DataView(out.buffer)
  out[0] = FrameType.Event
  out[5] = payload.kind
  view.setUint32(6, meta.length)
  out.set(meta, HEADER_SIZE)
  out.set(payload.bytes, HEADER_SIZE + meta.length)
  return out
}

/** Frame one KV change (a set carries its value as the payload and the time it has left). */
export function writeKvEvent (change: KvChange): Uint8Array {
  const { ns, epoch, key, seq, op } = change
  if (op === 'set') {
    return writeFrame(FrameType.Event, 0, { ep: 'kv', ns, op, key, seq, epoch, ttl: change.ttl }, { kind: change.kind as EncodedPayload['kind'], bytes: change.value })
  }
  return writeFrame(FrameType.Event, 0, { ep: 'kv', ns, op, key, seq, epoch }, undefined)
}
