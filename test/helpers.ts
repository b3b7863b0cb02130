/**
 * Shared test helpers: a real server on an ephemeral 127.0.0.1 port, and waiting for events with
 * a deadline (a test that waits forever is a hang, not a failure).
 */
import type { EventEmitter } from 'eventemitter3'
import { createServer, type ServerOptions, type Yard } from 'signalyard/server'

/** A yard on 127.0.0.1 and a free port. */
export function startYard (options: ServerOptions = {}): Promise<Yard> {
  return createServer({ port: 0, host: '127.0.0.1', ...options })
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
