// bench/lib/stats.mjs — small statistics helpers shared by the scenarios: percentiles over
// latency samples (with a bounded reservoir so a long step never grows without limit), ratios
// and number formatting for the tables.

/**
 * The p-th percentile (0 … 100) of `values` by nearest rank; NaN for an empty list.
 * Sorts a copy: the caller's array is left as it is.
 * @param {ArrayLike<number>} values
 * @param {number} p
 */
export function percentile (values, p) {
  if (values.length === 0) return NaN
  const sorted = Float64Array.from(values).sort()
  return percentileOfSorted(sorted, p)
}

/** Nearest-rank percentile of an already sorted array. */
export function percentileOfSorted (sorted, p) {
  if (sorted.length === 0) return NaN
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]
}

/** Several percentiles at once (one sort). Returns `{ p50: …, p99: … }` for ps = [50, 99]. */
export function percentiles (values, ps) {
  const sorted = Float64Array.from(values).sort()
  const out = {}
  for (const p of ps) out[`p${p}`] = percentileOfSorted(sorted, p)
  return out
}

/** Arithmetic mean; NaN for an empty list. */
export function mean (values) {
  if (values.length === 0) return NaN
  let sum = 0
  for (const v of values) sum += v
  return sum / values.length
}

/** Median; NaN for an empty list. */
export function median (values) {
  return percentile(values, 50)
}

/**
 * A fixed-size uniform sample of a stream of numbers (Vitter's algorithm R): memory stays bounded
 * whatever the message rate, and every value had the same chance to be kept.
 */
export class Reservoir {
  /** @param {number} size */
  constructor (size = 20_000) {
    this.size = size
    this.values = new Float64Array(size)
    this.seen = 0
  }

  add (value) {
    if (this.seen < this.size) this.values[this.seen] = value
    else {
      const j = Math.floor(Math.random() * (this.seen + 1))
      if (j < this.size) this.values[j] = value
    }
    this.seen++
  }

  /** The kept samples (a view; at most `size`). */
  samples () {
    return this.values.subarray(0, Math.min(this.seen, this.size))
  }

  percentiles (ps) {
    return percentiles(this.samples(), ps)
  }
}

/** CPU time in µs between two process.cpuUsage() readings (user + system). */
export function cpuDelta (before, after) {
  return (after.user - before.user) + (after.system - before.system)
}

/** a ÷ b, or NaN when b is not a positive finite number. */
export function ratio (a, b) {
  return Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : NaN
}

/** A number for a table: `digits` significant decimals by magnitude; '–' for NaN/undefined. */
export function fmt (value, digits = 2) {
  if (value === undefined || value === null || Number.isNaN(value)) return '–'
  if (!Number.isFinite(value)) return value > 0 ? '∞' : '-∞'
  const abs = Math.abs(value)
  if (abs >= 10_000) return Math.round(value).toLocaleString('en-US')
  if (abs >= 100) return value.toFixed(0)
  if (abs >= 10) return value.toFixed(Math.max(0, digits - 1))
  return value.toFixed(digits)
}

/** A ratio for a table: '1.23×'. */
export function fmtRatio (value) {
  return Number.isFinite(value) ? `${value.toFixed(2)}×` : '–'
}

/** A fraction as a percentage: '99.8 %'. */
export function fmtPercent (value) {
  return Number.isFinite(value) ? `${(value * 100).toFixed(1)} %` : '–'
}
