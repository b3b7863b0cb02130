/**
 * `pc.path`: which path carries a peer connection — the transport and, on WebRTC, the selected
 * ICE candidate pair (candidate types, protocol, round-trip time), read from the
 * RTCPeerConnection. Two ways to read it, by stack:
 *
 * - libwebrtc (browsers, @roamhq/wrtc): `getStats()` — the transport's `selectedCandidatePairId`
 *   (or the nominated, succeeded pair), its local and remote candidates; `currentRoundTripTime`
 *   is in seconds; a local relay candidate's `relayProtocol` is the protocol to the TURN server.
 * - node-datachannel's polyfill: `selectedCandidatePair()` (its `transportType` names TCP) and
 *   `getStats()` for the RTT, which it reports in milliseconds.
 *
 * The path is read only from an open data channel's connection: a libdatachannel connection
 * stuck in its handshake can block a call into it.
 */
import type { Transport } from '../protocol/handshake.js'

export type CandidateType = 'host' | 'srflx' | 'prflx' | 'relay'

/** What carries a peer connection now (`pc.path`). */
export interface PeerPath {
  /** The transport this side's stream frames take. */
  transport: Transport
  /** On WebRTC: the type of the local candidate of the selected pair. */
  local?: CandidateType
  /** On WebRTC: the type of the remote candidate of the selected pair. */
  remote?: CandidateType
  /** On WebRTC: 'udp' or 'tcp' — for a local relay candidate, the protocol to the TURN server. */
  protocol?: 'udp' | 'tcp'
  /** On WebRTC: the pair's current round-trip time in milliseconds, when the stack reports one. */
  rtt?: number
}

/** The candidate pair part of a path, or null when the stack does not say. */
export type PairInfo = Omit<PeerPath, 'transport'>

const TYPES = new Set(['host', 'srflx', 'prflx', 'relay'])

function candidateType (value: unknown): CandidateType | undefined {
  const text = String(value).toLowerCase()
  if (TYPES.has(text)) return text as CandidateType
  // node-datachannel spells them out
  if (text.includes('reflexive')) return text.includes('peer') ? 'prflx' : 'srflx'
  if (text.includes('relay')) return 'relay'
  return text.includes('host') ? 'host' : undefined
}

function protocolOf (value: unknown): 'udp' | 'tcp' | undefined {
  const text = String(value).toLowerCase()
  if (text.startsWith('tcp') || text === 'tls') return 'tcp'
  return text.startsWith('udp') || text === 'dtls' ? 'udp' : undefined
}

type Stats = Iterable<[string, Record<string, unknown>]> & { get?: (id: string) => unknown }

/** Read the selected candidate pair of `rtc` (any RTCPeerConnection); null when it has none yet. */
export async function readPair (rtc: object): Promise<PairInfo | null> {
  const pc = rtc as { selectedCandidatePair?: () => unknown, getStats?: () => Promise<Stats> }
  if (typeof pc.selectedCandidatePair === 'function') {
    const pair = pc.selectedCandidatePair() as { local?: Record<string, unknown>, remote?: Record<string, unknown> } | null
    if (pair?.local === undefined || pair.remote === undefined) return null
    const info: PairInfo = { local: candidateType(pair.local.type), remote: candidateType(pair.remote.type), protocol: protocolOf(pair.local.transportType) ?? 'udp' }
    const stats = typeof pc.getStats === 'function' ? await pc.getStats() : []
    for (const [, s] of stats) {
      if (s.type === 'candidate-pair' && typeof s.currentRoundTripTime === 'number' && s.currentRoundTripTime >= 0) info.rtt = Math.round(s.currentRoundTripTime)
    }
    return info
  }
  if (typeof pc.getStats !== 'function') return null
  const byId = new Map<string, Record<string, unknown>>()
  for (const [id, s] of await pc.getStats()) byId.set(id, s)
  let pair: Record<string, unknown> | undefined
  for (const s of byId.values()) {
    if (s.type === 'transport' && typeof s.selectedCandidatePairId === 'string') pair = byId.get(s.selectedCandidatePairId)
  }
  if (pair === undefined) {
    for (const s of byId.values()) if (s.type === 'candidate-pair' && s.nominated === true && s.state === 'succeeded') pair = s
  }
  if (pair === undefined) return null
  const local = byId.get(String(pair.localCandidateId))
  const remote = byId.get(String(pair.remoteCandidateId))
  const info: PairInfo = { local: candidateType(local?.candidateType), remote: candidateType(remote?.candidateType) }
  const protocol = local?.candidateType === 'relay' ? protocolOf(local?.relayProtocol) ?? protocolOf(local?.protocol) : protocolOf(local?.protocol)
  if (protocol !== undefined) info.protocol = protocol
  if (typeof pair.currentRoundTripTime === 'number') info.rtt = Math.round(pair.currentRoundTripTime * 1000)
  return info
}

/** How often the path of a pc on WebRTC is read again (the RTT, or ICE switching pairs). */
export const PATH_POLL_MS = 5000

/**
 * Keeps a connection's path: `update()` on every change of transport, a poll while on WebRTC.
 * `changed` fires when anything but the RTT differs from the last path told.
 */
export class PathWatch {
  path: PeerPath | null = null
  private timer: ReturnType<typeof setInterval> | null = null
  private reading = 0
  private stopped = false

  constructor (
    /** The transport now and, on WebRTC, the open RTCPeerConnection; null before the pc opens. */
    private readonly source: () => { transport: Transport, rtc: object | null } | null,
    private readonly changed: (path: PeerPath) => void
  ) {}

  /** Read the path again now (the transport changed, or the poll). */
  update (): void {
    if (this.stopped) return
    const now = this.source()
    if (now === null) return
    const read = ++this.reading
    if (now.transport === 'relay' || now.rtc === null) {
      this.poll(false)
      return this.set({ transport: now.transport })
    }
    this.poll(true)
    readPair(now.rtc).then((pair) => {
      if (read !== this.reading || this.stopped) return // a newer read, or the pc closed
      this.set({ transport: 'webrtc', ...(pair ?? {}) })
    }, () => {
      if (read === this.reading && !this.stopped) this.set({ transport: 'webrtc' })
    })
  }

  stop (): void {
    this.stopped = true
    this.poll(false)
  }

  private set (path: PeerPath): void {
    const before = this.path
    this.path = path
    const same = before !== null && before.transport === path.transport && before.local === path.local &&
      before.remote === path.remote && before.protocol === path.protocol
    if (!same) this.changed(path)
  }

  private poll (on: boolean): void {
    if (on && this.timer === null) {
      this.timer = setInterval(() => this.update(), PATH_POLL_MS)
      const unref = (this.timer as { unref?: () => void }).unref
      if (typeof unref === 'function') unref.call(this.timer) // a pc's poll never keeps Node running
    } else if (!on && this.timer !== null) {
      clearInterval(this.timer)
      this.timer = null
    }
  }
}
