/**
 * The slot a peer connection keeps its pipe in: at most one pipe at a time, replaceable. Each pipe
 * gets handlers bound to its generation, so once a pipe is replaced or dropped nothing it still
 * reports reaches the connection: the connection and its mux only ever see the pipe of the moment.
 */
import type { Pipe, PipeHandlers } from './pipe.js'

export class PipeSlot {
  private pipe: Pipe | null = null
  private isOpen = false
  private gen = 0

  /** `on` hears the current pipe only. */
  constructor (private readonly on: PipeHandlers) {}

  /** The current pipe (open or still opening), or null. */
  get current (): Pipe | null { return this.pipe }

  /** The current pipe when it carries messages, else null. */
  get open (): Pipe | null { return this.isOpen ? this.pipe : null }

  /** Drop the current pipe and put the one `make` builds in its place (if `make` throws, the slot stays empty). */
  use (make: (on: PipeHandlers) => Pipe): void {
    this.drop()
    const gen = this.gen
    this.pipe = make({
      open: () => {
        if (gen !== this.gen) return
        this.isOpen = true
        this.on.open()
      },
      message: (bytes) => { if (gen === this.gen) this.on.message(bytes) },
      drain: () => { if (gen === this.gen) this.on.drain() },
      close: (error) => { if (gen === this.gen) this.on.close(error) }
    })
  }

  /** Close the current pipe (if any) and ignore whatever it still reports. */
  drop (): void {
    const pipe = this.pipe
    this.pipe = null
    this.isOpen = false
    this.gen++
    pipe?.close()
  }
}
