/**
 * A first-in, first-out queue whose `shift` costs O(1) whatever its length. `Array#shift` moves
 * every element once an array outgrows V8's small-object space (about 16,000 elements), so a
 * queue of many tiny messages drained one by one costs O(n²): a stream of small numbered messages
 * froze a peer connection for seconds that way. Used by the mux, the ledger, relay streams and
 * the pacer. The array is compacted when more than half of it has been taken.
 */
export class Fifo<T> implements Iterable<T> {
  private items: T[] = []
  private head = 0

  get length (): number { return this.items.length - this.head }

  push (item: T): void {
    this.items.push(item)
  }

  /** The oldest item, left in place. */
  peek (): T | undefined {
    return this.head < this.items.length ? this.items[this.head] : undefined
  }

  /** The newest item, left in place. */
  last (): T | undefined {
    return this.head < this.items.length ? this.items[this.items.length - 1] : undefined
  }

  /** Take the oldest item. */
  shift (): T | undefined {
    if (this.head >= this.items.length) return undefined
    const item = this.items[this.head]
    this.items[this.head] = undefined as T // let it be collected
    this.head++
    if (this.head === this.items.length) this.clear()
    else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return item
  }

  /** Keep only the items for which `keep` is true, in order. */
  retain (keep: (item: T) => boolean): void {
    this.items = this.items.slice(this.head).filter(keep)
    this.head = 0
  }

  clear (): void {
    this.items = []
    this.head = 0
  }

  * [Symbol.iterator] (): Iterator<T> {
    for (let i = this.head; i < this.items.length; i++) yield this.items[i]
  }
}
