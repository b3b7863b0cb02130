/**
 * Server-wide budgets: one counter per kind of memory a stranger can make the server hold
 * (backlog bytes, relay buffers, KV bytes, pending upgrades). A holder `take`s before it keeps
 * something and `give`s it back when it lets go; a take that would cross the limit fails and the
 * caller refuses the request with a coded error (`quota-exceeded`). The per-connection bounds sit
 * in front of these: a budget is what all connections together may use.
 */

/** One bounded allowance, in bytes (or a count, for pending upgrades). */
export class Budget {
  /** What is held now. */
  used = 0
  /** The highest `used` has been (for the metrics). */
  peak = 0
  /** Takes refused because the budget was full. */
  refusals = 0

  constructor (readonly name: BudgetName, readonly limit: number) {}

  /** Hold `amount` more if it fits under the limit; false (nothing taken) if it does not. */
  take (amount: number): boolean {
    if (this.used + amount > this.limit) {
      this.refusals++
      return false
    }
    this.used += amount
    if (this.used > this.peak) this.peak = this.used
    return true
  }

  /** Give back `amount` taken earlier. */
  give (amount: number): void {
    this.used = Math.max(0, this.used - amount)
  }
}

export type BudgetName = 'backlog' | 'relay' | 'kv' | 'pendingUpgrades'

/** The server's budgets, by name. `kv` is kept here for the in-memory broker; Redis keeps its own. */
export type Budgets = { readonly [N in BudgetName]: Budget }

/** The budgets for these limits (limits.total). */
export function makeBudgets (total: { [N in BudgetName]: number }): Budgets {
  return {
    backlog: new Budget('backlog', total.backlog),
    relay: new Budget('relay', total.relay),
    kv: new Budget('kv', total.kv),
    pendingUpgrades: new Budget('pendingUpgrades', total.pendingUpgrades)
  }
}
