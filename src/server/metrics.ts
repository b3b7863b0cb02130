/**
 * Counters for `GET /metrics` (Prometheus text format, version 0.0.4). The connection counts
 * frames and bytes in and out per endpoint (`connection` for frames that belong to no stream), and
 * refusals by error code; gauges (connections, namespaces, relay pairs, KV keys, presence ids) are
 * read when the page is rendered. Plain numbers in maps: nothing grows with traffic.
 */
import type { ErrorCode } from '../protocol/errors.js'
import type { Endpoint } from '../protocol/frames.js'
import type { Budget } from './budget.js'

/** The label frames and bytes are counted under: their stream's endpoint, `connection`, or a compat endpoint. */
export type MetricEndpoint = Endpoint | 'connection' | CompatEndpoint

/** The endpoints that speak other libraries' protocols (SPEC §10; src/server/compat/). */
export type CompatEndpoint = 'y-webrtc' | 'peerjs'

interface Traffic { frames: number, bytes: number }

export class Metrics {
  readonly in = new Map<MetricEndpoint, Traffic>()
  readonly out = new Map<MetricEndpoint, Traffic>()
  /** Refusals and coded closes, by code (error codes, plus close reasons such as `slow-consumer`). */
  readonly refusals = new Map<string, number>()
  /** TURN credentials minted (HELLO and refreshes). */
  turnCredentials = 0
  /** STUN Binding requests answered, and left unanswered past the responder's budget. */
  stunAnswered = 0
  stunDropped = 0
  /** Peer connections by the transport they settled on, as their initiators report it. */
  readonly pcs = { webrtc: 0, relay: 0 }

  minted (): void { this.turnCredentials++ }
  settled (transport: 'webrtc' | 'relay'): void { this.pcs[transport]++ }

  received (ep: MetricEndpoint, bytes: number): void { add(this.in, ep, bytes) }
  sent (ep: MetricEndpoint, bytes: number): void { add(this.out, ep, bytes) }
  /** One broadcast of `bytes` to `receivers` connections, counted once. */
  sentMany (ep: MetricEndpoint, receivers: number, bytes: number): void {
    const flow = this.out.get(ep)
    if (flow === undefined) this.out.set(ep, { frames: receivers, bytes: receivers * bytes })
    else { flow.frames += receivers; flow.bytes += receivers * bytes }
  }
  refused (code: ErrorCode | 'too-many-connections' | 'slow-consumer' | 'too-many-bad-frames' | 'backlog-full' | 'unavailable' | 'handshake-timeout'): void {
    this.refusals.set(code, (this.refusals.get(code) ?? 0) + 1)
  }

  /** The exposition text, with the gauges given. */
  render (gauges: { connections: number, namespaces: number, relayPairs: number, kvKeys: number, peers?: number, signals?: number }, budgets: Iterable<Pick<Budget, 'name' | 'used' | 'limit'>> = []): string {
    const lines: string[] = []
    const gauge = (name: string, help: string, value: number | undefined): void => {
      if (value === undefined) return
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${value}`)
    }
    gauge('signalyard_connections', 'Open WebSocket connections.', gauges.connections)
    gauge('signalyard_namespaces', 'Namespaces with at least one open stream on this server.', gauges.namespaces)
    gauge('signalyard_relay_pairs', 'Paired relay streams.', gauges.relayPairs)
    gauge('signalyard_kv_keys', 'Live KV keys.', gauges.kvKeys)
    gauge('signalyard_peers', 'Claimed presence ids.', gauges.peers)
    gauge('signalyard_signal_ids', 'Claimed node (signal) ids.', gauges.signals)
    const list = [...budgets]
    if (list.length > 0) {
      lines.push('# HELP signalyard_budget_used Server-wide budgets in use (bytes; pendingUpgrades: connections).', '# TYPE signalyard_budget_used gauge')
      for (const b of list) lines.push(`signalyard_budget_used{budget="${b.name}"} ${b.used}`)
      lines.push('# HELP signalyard_budget_limit Server-wide budget sizes (limits.total).', '# TYPE signalyard_budget_limit gauge')
      for (const b of list) lines.push(`signalyard_budget_limit{budget="${b.name}"} ${b.limit}`)
    }
    const flows = (name: string, help: string, map: Map<MetricEndpoint, Traffic>, field: keyof Traffic): void => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`)
      for (const [ep, flow] of [...map].sort(([a], [b]) => a.localeCompare(b))) lines.push(`${name}{endpoint="${ep}"} ${flow[field]}`)
    }
    flows('signalyard_frames_in_total', 'Frames received, by endpoint.', this.in, 'frames')
    flows('signalyard_bytes_in_total', 'Bytes received, by endpoint.', this.in, 'bytes')
    flows('signalyard_frames_out_total', 'Frames sent (a broadcast counts once per receiving connection), by endpoint.', this.out, 'frames')
    flows('signalyard_bytes_out_total', 'Bytes sent, by endpoint.', this.out, 'bytes')
    lines.push('# HELP signalyard_stun_answered_total STUN Binding requests answered.', '# TYPE signalyard_stun_answered_total counter', `signalyard_stun_answered_total ${this.stunAnswered}`)
    lines.push('# HELP signalyard_stun_dropped_total STUN Binding requests left unanswered (answer budget or send queue full).', '# TYPE signalyard_stun_dropped_total counter', `signalyard_stun_dropped_total ${this.stunDropped}`)
    lines.push('# HELP signalyard_turn_credentials_total TURN credentials minted (HELLO and refreshes).', '# TYPE signalyard_turn_credentials_total counter', `signalyard_turn_credentials_total ${this.turnCredentials}`)
    lines.push('# HELP signalyard_peer_connections_total Peer connections by the transport they settled on (WebRTC once it carried them, else the relay), as their initiators report.', '# TYPE signalyard_peer_connections_total counter')
    for (const t of ['relay', 'webrtc'] as const) lines.push(`signalyard_peer_connections_total{transport="${t}"} ${this.pcs[t]}`)
    lines.push('# HELP signalyard_refusals_total Refused frames, streams and connections, by code.', '# TYPE signalyard_refusals_total counter')
    for (const [code, n] of [...this.refusals].sort(([a], [b]) => a.localeCompare(b))) lines.push(`signalyard_refusals_total{code="${code}"} ${n}`)
    return lines.join('\n') + '\n'
  }
}

function add (map: Map<MetricEndpoint, Traffic>, ep: MetricEndpoint, bytes: number): void {
  const flow = map.get(ep)
  if (flow === undefined) map.set(ep, { frames: 1, bytes })
  else { flow.frames++; flow.bytes += bytes }
}
