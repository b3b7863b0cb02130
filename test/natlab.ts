/**
 * The NAT lab (SPEC §8 "Proof", issue 12): network namespaces joined by veth pairs that model the
 * networks real users sit behind, built and torn down by the test that uses it.
 *
 *                       ┌──────────── public (203.0.113.0/24, bridge br0) ────────────┐
 *                       │ 203.0.113.1: signalyard (WebSocket + STUN) and coturn (TURN)  │
 *                       │ default route → a black-hole veth (coturn's sends to private  │
 *                       │ addresses fail quietly instead of ending its allocation)       │
 *                       └──┬──────────────┬───────────────┬──────────────┬─────────────┘
 *        open peer a .21 ──┘   router a .11               router b .12   └── open peer b .22
 *                              (iptables NAT)             (iptables NAT)
 *                              LAN 10.0.1.0/24            LAN 10.0.2.0/24
 *                              peer a 10.0.1.2            peer b 10.0.2.2
 *
 * A router's mode says what NAT it does (`open` means the side's peer is the open one, on the
 * public segment): `cone` (MASQUERADE, unsolicited WAN input dropped: endpoint-independent
 * mapping, port-restricted filtering), `symmetric` (MASQUERADE --random-fully: a new port per
 * destination), `udp-blocked` (as cone, and UDP from the LAN is dropped: only TCP leaves).
 *
 * Every link is created directly inside the lab's namespaces (never in the machine's own), all
 * addresses are documentation or private ranges, IPv6 is off everywhere. Names carry this
 * process's pid and a random suffix, so parallel and aborted runs never collide; teardown kills
 * the processes the lab started (and anything left inside its namespaces) and deletes exactly
 * the namespaces it made, also on SIGINT/SIGTERM and uncaught errors. A later lab reaps the
 * namespaces and temporary directories of a lab whose process died without tearing down (SIGKILL).
 *
 * Peers (the second half of this file) run test/fixtures/nat-peer.mjs: a Node process each, or a
 * page each in a Chromium launched inside the peer's namespace; `runPair` runs one pair and
 * collects the JSON lines both print. docs/NAT-LAB.md describes the lab and what it measured.
 *
 * Every step that fails throws with the command and its stderr.
 */
import { execFile, spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser } from 'playwright-core'

export type NatMode = 'open' | 'cone' | 'symmetric' | 'udp-blocked'
export type Side = 'a' | 'b'

/** The public segment's addresses. */
export const PUBLIC_IP = '203.0.113.1'
const PUBLIC_PREFIX = '203.0.113'
const ROUTER_WAN: Record<Side, string> = { a: `${PUBLIC_PREFIX}.11`, b: `${PUBLIC_PREFIX}.12` }
const OPEN_PEER: Record<Side, string> = { a: `${PUBLIC_PREFIX}.21`, b: `${PUBLIC_PREFIX}.22` }
const LAN: Record<Side, string> = { a: '10.0.1', b: '10.0.2' }
const BLACK_HOLE = { local: '192.0.2.1', gateway: '192.0.2.2', mac: '02:00:00:00:00:02' }
const NAME = /^sylab-(\d+)-[0-9a-f]+-/
/**
 * iptables on nf_tables (Debian's default `iptables`). Both backends work inside a fresh
 * namespace here (MASQUERADE, --random-fully, conntrack matches); nft is the kernel's native
 * path and needs no legacy x_tables modules loaded into the machine's kernel.
 */
const IPTABLES_RESTORE = 'iptables-nft-restore'
const IPTABLES = 'iptables-nft'
const COMMAND_TIMEOUT = 10_000
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
/**
 * shared/MACHINE.md's flags, less the loopback ones: every candidate here is on a lab interface.
 * mDNS host names are off so that host candidates show their addresses.
 */
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  `--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE ${PUBLIC_IP}`, '--disable-features=WebRtcHideLocalIpsWithMdns'
]

/** Run a command; throws with the command line, exit status and stderr when it fails. */
export function run (cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: COMMAND_TIMEOUT, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err === null) return resolve(stdout)
      const status = err.killed ? `killed after ${COMMAND_TIMEOUT} ms` : `exit ${String(err.code ?? err.signal)}`
      reject(new Error(`\`${[cmd, ...args].join(' ')}\` failed (${status}): ${stderr.trim() || err.message}`))
    })
    if (input !== undefined) child.stdin?.end(input)
  })
}

/** A namespace command: `ip netns exec <ns> <cmd> …`. */
const inNs = (ns: string, cmd: string, args: string[], input?: string): Promise<string> =>
  run('ip', ['netns', 'exec', ns, cmd, ...args], input)

/** The namespace's sysctls: one `sh -c` writing into its /proc/sys (paths with dots as slashes). */
async function sysctls (ns: string, values: Record<string, string | number>, optional: string[] = []): Promise<void> {
  const lines = Object.entries(values).map(([key, value]) => {
    const path = `/proc/sys/${key.replaceAll('.', '/')}`
    return optional.includes(key) ? `if [ -e ${path} ]; then echo ${value} > ${path}; fi` : `echo ${value} > ${path}`
  })
  await inNs(ns, 'sh', ['-ec', lines.join('\n')])
}

/**
 * Why the lab cannot be built on this machine, or null when it can: it needs root, `ip netns`,
 * iptables (nft), conntrack and coturn's turnserver.
 */
export function labUnavailable (): string | null {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`
  if (process.getuid?.() !== 0) return 'network namespaces need root (ip netns add)'
  for (const cmd of ['ip', IPTABLES, IPTABLES_RESTORE, 'conntrack', 'turnserver']) {
    if (spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status !== 0) return `\`${cmd}\` is not installed (.ci/run installs iproute2, iptables, conntrack, coturn)`
  }
  const probe = `sylab-${process.pid}-probe${randomBytes(2).toString('hex')}`
  const made = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' })
  if (made.status !== 0) return `\`ip netns add\` failed: ${(made.stderr ?? '').trim()}`
  spawnSync('ip', ['netns', 'del', probe])
  return null
}

/** A process the lab started inside one of its namespaces. */
export interface LabProcess {
  readonly child: ChildProcess
  readonly ns: string
  /** Everything it printed so far (stdout and stderr, interleaved). */
  output: () => string
  /** Resolves with the exit code (or the signal's name) once it exited. */
  readonly exited: Promise<number | string>
}

/** A signalyard server in the public namespace. */
export interface LabYard { url: string, process: LabProcess }

export interface Lab {
  readonly id: string
  readonly publicIp: string
  /** Every namespace the lab made, by role. */
  readonly ns: { public: string, router: Record<Side, string>, lan: Record<Side, string>, open: Record<Side, string> }
  /** The routers' current modes. */
  readonly modes: Record<Side, NatMode>
  /** Set the routers' NAT (flushes their conntrack tables): cone, symmetric, udp-blocked, or open. */
  setModes: (a: NatMode, b?: NatMode) => Promise<void>
  /** The namespace a peer of `side` runs in for the current mode (the open one in `open`). */
  peerNs: (side: Side) => string
  /** The address a peer of `side` has in the current mode. */
  peerIp: (side: Side) => string
  /** The address a peer of `side` appears from on the public segment (its router's, behind NAT). */
  publicIpOf: (side: Side) => string
  /** Forget every NAT mapping and tracked flow on both routers (between trials). */
  flushConntrack: () => Promise<void>
  /**
   * Drop forwarded packets on `side`'s router that match `match` (iptables arguments, e.g.
   * `['-p', 'udp']`), at once and ahead of every other rule; the returned function lifts it.
   */
  dropOnRouter: (side: Side, match: string[]) => Promise<() => Promise<void>>
  /** Start `cmd args` inside `ns`; it is killed at teardown if still running. */
  spawn: (ns: string, cmd: string, args: string[], options?: SpawnOptions) => LabProcess
  /** Start coturn on the public IP (UDP and TCP), REST credentials with `secret`. */
  startCoturn: (options: { port: number, secret: string }) => Promise<LabProcess>
  /** Start `node dist/cli.js` on the public IP with the given extra CLI arguments and environment. */
  startYard: (options: { port: number, args: string[], env?: Record<string, string> }) => Promise<LabYard>
  /**
   * Chromium (Debian's, through playwright-core) running inside `ns`, launched on first use and
   * reused; its processes die with the lab.
   */
  browser: (ns: string) => Promise<Browser>
  /** Close the browsers (each within 5 s; teardown kills whatever is left). */
  closeBrowsers: () => Promise<void>
  /** Kill everything the lab started and delete its namespaces. Safe to call twice. */
  teardown: () => void
}

const live = new Set<Lab>()
let hooked = false

/** Tear every live lab down when the process ends in any way but SIGKILL. */
function hookExit (): void {
  if (hooked) return
  hooked = true
  const all = (): void => { for (const lab of [...live]) lab.teardown() }
  process.on('exit', all)
  process.on('uncaughtExceptionMonitor', all)
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      all()
      process.exit(128 + ({ SIGHUP: 1, SIGINT: 2, SIGTERM: 15 })[signal])
    })
  }
}

/** Whether a process with this pid exists. */
function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** SIGKILL whatever still runs inside `ns`, then delete it; returns an error message or null. */
function removeNamespace (ns: string): string | null {
  const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' })
  for (const pid of (pids.stdout ?? '').split(/\s+/).filter(Boolean)) {
    try { process.kill(Number(pid), 'SIGKILL') } catch { /* gone already */ }
  }
  // processes killed a moment ago may still hold it: try again a few times
  let del = spawnSync('ip', ['netns', 'del', ns], { encoding: 'utf8' })
  for (let i = 0; i < 5 && del.status !== 0; i++) {
    spawnSync('sleep', ['0.1'])
    del = spawnSync('ip', ['netns', 'del', ns], { encoding: 'utf8' })
  }
  return del.status === 0 ? null : `\`ip netns del ${ns}\` failed: ${(del.stderr ?? '').trim()}`
}

/**
 * Delete the namespaces (and temporary directories) of labs whose process died without tearing
 * them down (it was SIGKILLed).
 */
function reapStale (): void {
  for (const entry of readdirSync(tmpdir())) {
    const m = NAME.exec(entry)
    if (m !== null && !alive(Number(m[1]))) rmSync(join(tmpdir(), entry), { recursive: true, force: true })
  }
  const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' })
  for (const line of (list.stdout ?? '').split('\n')) {
    const ns = line.split(' ')[0]
    const m = NAME.exec(ns)
    if (m === null || alive(Number(m[1]))) continue
    const problem = removeNamespace(ns)
    console.log(`natlab: reaped ${ns}, left by a dead process ${m[1]}${problem !== null ? ` (${problem})` : ''}`)
  }
}

/** The iptables-restore input for a router in `mode` (empty tables for `open`). */
function rules (mode: NatMode): string {
  const masquerade = mode === 'symmetric' ? '-j MASQUERADE --random-fully' : '-j MASQUERADE'
  const nat = mode === 'open' ? [] : [`-A POSTROUTING -o wan ${masquerade}`]
  const filter = mode === 'open'
    ? []
    : [
        // Unsolicited WAN input is dropped before conntrack confirms it: without this a probe
        // that arrives first claims the mapping's port and MASQUERADE moves the LAN flow elsewhere.
        '-A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT',
        '-A INPUT -i wan -j DROP',
        '-A FORWARD -i wan -o lan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT',
        '-A FORWARD -i wan -j DROP',
        ...(mode === 'udp-blocked' ? ['-A FORWARD -i lan -p udp -j DROP'] : [])
      ]
  return [
    '*nat', ':PREROUTING ACCEPT [0:0]', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':POSTROUTING ACCEPT [0:0]', ...nat, 'COMMIT',
    '*filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ...filter, 'COMMIT', ''
  ].join('\n')
}

/**
 * Build a lab: the public namespace with its bridge and black hole, two routers (mode `open`
 * until `setModes`), their LAN peers and the two open peers. Throws (after removing what it made)
 * when a step fails. Call `teardown()` when done; exit hooks call it too.
 */
export async function createLab (): Promise<Lab> {
  hookExit()
  reapStale()
  const id = `sylab-${process.pid}-${randomBytes(3).toString('hex')}`
  const ns = {
    public: `${id}-pub`,
    router: { a: `${id}-ra`, b: `${id}-rb` },
    lan: { a: `${id}-la`, b: `${id}-lb` },
    open: { a: `${id}-oa`, b: `${id}-ob` }
  }
  const made: string[] = []
  const processes = new Set<LabProcess>()
  const dirs: string[] = []
  const browsers = new Map<string, Promise<Browser>>()
  const modes: Record<Side, NatMode> = { a: 'open', b: 'open' }
  let down = false

  const teardown = (): void => {
    if (down) return
    down = true
    live.delete(lab)
    for (const p of processes) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL')
    const problems = made.map(removeNamespace).filter((p): p is string => p !== null)
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
    if (problems.length > 0) throw new Error(`natlab teardown: ${problems.join('; ')}`)
  }

  const ip = (n: string, args: string[]): Promise<string> => run('ip', ['-n', n, ...args])
  const veth = async (a: string, aName: string, b: string, bName: string): Promise<void> => {
    await run('ip', ['link', 'add', aName, 'netns', a, 'type', 'veth', 'peer', 'name', bName, 'netns', b])
  }
  const up = async (n: string, dev: string, address?: string): Promise<void> => {
    if (address !== undefined) await ip(n, ['addr', 'add', address, 'dev', dev])
    await ip(n, ['link', 'set', dev, 'up'])
  }

  const spawnIn = (n: string, cmd: string, args: string[], options: SpawnOptions = {}): LabProcess => {
    if (down) throw new Error('natlab: the lab is torn down')
    const child = spawn('ip', ['netns', 'exec', n, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'], ...options })
    let out = ''
    child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr?.on('data', (d: Buffer) => { out += d.toString() })
    const exited = new Promise<number | string>((resolve) => {
      child.on('error', (err) => { out += `\n[natlab] cannot run ${cmd}: ${err.message}\n`; resolve(-1) })
      child.on('exit', (code, signal) => resolve(code ?? signal ?? -1))
    })
    const p: LabProcess = { child, ns: n, output: () => out, exited }
    processes.add(p)
    void exited.then(() => processes.delete(p))
    return p
  }

  /** Resolve once `test` holds for the output, reject when the process exits first or after `ms`. */
  const await_ = async (p: LabProcess, what: string, test: () => boolean | Promise<boolean>, ms = 5000): Promise<void> => {
    const deadline = Date.now() + ms
    let gone = false
    void p.exited.then(() => { gone = true })
    while (!(await test())) {
      if (gone) throw new Error(`natlab: ${what} exited (${String(await p.exited)}) before it was ready:\n${p.output().slice(-2000)}`)
      if (Date.now() > deadline) throw new Error(`natlab: ${what} not ready within ${ms} ms:\n${p.output().slice(-2000)}`)
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  }

  const lab: Lab = {
    id,
    publicIp: PUBLIC_IP,
    ns,
    modes,
    async setModes (a, b = a) {
      for (const [side, mode] of [['a', a], ['b', b]] as Array<[Side, NatMode]>) {
        await inNs(ns.router[side], IPTABLES_RESTORE, [], rules(mode))
        modes[side] = mode
      }
      await lab.flushConntrack()
    },
    peerNs: (side) => modes[side] === 'open' ? ns.open[side] : ns.lan[side],
    peerIp: (side) => modes[side] === 'open' ? OPEN_PEER[side] : `${LAN[side]}.2`,
    publicIpOf: (side) => modes[side] === 'open' ? OPEN_PEER[side] : ROUTER_WAN[side],
    async flushConntrack () {
      for (const side of ['a', 'b'] as const) await inNs(ns.router[side], 'conntrack', ['-F'])
    },
    async dropOnRouter (side, match) {
      const rule = ['FORWARD', ...match, '-j', 'DROP']
      await inNs(ns.router[side], IPTABLES, ['-I', ...rule.slice(0, 1), '1', ...rule.slice(1)])
      let lifted = false
      return async () => {
        if (lifted) return
        lifted = true
        await inNs(ns.router[side], IPTABLES, ['-D', ...rule])
      }
    },
    spawn: spawnIn,
    async startCoturn ({ port, secret }) {
      const dir = mkdtempSync(join(tmpdir(), `${id}-coturn-`))
      dirs.push(dir)
      const p = spawnIn(ns.public, 'turnserver', [
        '-n', '--use-auth-secret', `--static-auth-secret=${secret}`, '--realm=natlab.signalyard.test',
        `--listening-ip=${PUBLIC_IP}`, `--relay-ip=${PUBLIC_IP}`, `--listening-port=${port}`,
        '--min-port=49152', '--max-port=65535', '--no-cli', '--no-tls', '--no-dtls', '--fingerprint',
        `--db=${join(dir, 'turndb')}`, '--log-file=stdout', '--simple-log'
      ])
      // ready when it listens on both transports
      await await_(p, 'turnserver', async () => {
        const [tcp, udp] = await Promise.all([
          inNs(ns.public, 'ss', ['-Hltn', `sport = :${port}`]), inNs(ns.public, 'ss', ['-Hlun', `sport = :${port}`])
        ])
        return tcp.trim() !== '' && udp.trim() !== ''
      })
      return p
    },
    async startYard ({ port, args, env = {} }) {
      const cli = new URL('../dist/cli.js', import.meta.url).pathname
      const p = spawnIn(ns.public, process.execPath, [cli, '--port', String(port), '--host', PUBLIC_IP, ...args], {
        env: { ...process.env, ...env }
      })
      await await_(p, 'signalyard', () => p.output().includes('signalyard listening on'))
      return { url: `ws://${PUBLIC_IP}:${port}/`, process: p }
    },
    browser (n) {
      const known = browsers.get(n)
      if (known !== undefined) return known
      const launching = (async () => {
        // playwright starts the executable it is given: a script that starts Chromium inside `n`
        const dir = mkdtempSync(join(tmpdir(), `${id}-chromium-`))
        dirs.push(dir)
        const wrapper = join(dir, 'chromium.sh')
        writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec '${n}' '${CHROMIUM}' "$@"\n`)
        chmodSync(wrapper, 0o755)
        try {
          return await chromium.launch({ executablePath: wrapper, args: CHROMIUM_ARGS, timeout: 15_000 })
        } catch (err) {
          throw new Error(`natlab: Chromium (${CHROMIUM}) did not launch in ${n}: ${(err as Error).message}`)
        }
      })()
      browsers.set(n, launching)
      return launching
    },
    async closeBrowsers () {
      const all = [...browsers.values()]
      browsers.clear()
      await Promise.all(all.map(async (launching) => {
        const b = await launching.catch(() => null)
        if (b !== null) await Promise.race([b.close().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 5000))])
      }))
    },
    teardown
  }
  live.add(lab)

  try {
    for (const n of [ns.public, ns.router.a, ns.router.b, ns.lan.a, ns.lan.b, ns.open.a, ns.open.b]) {
      await run('ip', ['netns', 'add', n])
      made.push(n)
      // before any link exists, so every interface made later inherits `default`
      await sysctls(n, {
        'net.ipv6.conf.all.disable_ipv6': 1,
        'net.ipv6.conf.default.disable_ipv6': 1,
        'net.ipv4.conf.all.rp_filter': 0,
        'net.ipv4.conf.default.rp_filter': 0,
        'net.ipv4.ip_forward': n === ns.router.a || n === ns.router.b ? 1 : 0,
        // br_netfilter may be loaded on the machine: bridged frames must not go through iptables
        'net.bridge.bridge-nf-call-iptables': 0
      }, ['net.bridge.bridge-nf-call-iptables'])
      await up(n, 'lo')
    }

    // the public segment: a bridge holding the servers' address
    await ip(ns.public, ['link', 'add', 'br0', 'type', 'bridge'])
    await up(ns.public, 'br0', `${PUBLIC_IP}/24`)
    // the black hole: a default route to a neighbour that never answers (permanent, so no ARP)
    await veth(ns.public, 'bh0', ns.public, 'bh1')
    await up(ns.public, 'bh0', `${BLACK_HOLE.local}/30`)
    await up(ns.public, 'bh1')
    await ip(ns.public, ['neigh', 'replace', BLACK_HOLE.gateway, 'lladdr', BLACK_HOLE.mac, 'dev', 'bh0', 'nud', 'permanent'])
    await ip(ns.public, ['route', 'add', 'default', 'via', BLACK_HOLE.gateway, 'dev', 'bh0'])

    for (const side of ['a', 'b'] as const) {
      // router: wan on the bridge, lan to its peer
      await veth(ns.router[side], 'wan', ns.public, `r${side}`)
      await ip(ns.public, ['link', 'set', `r${side}`, 'master', 'br0'])
      await up(ns.public, `r${side}`)
      await up(ns.router[side], 'wan', `${ROUTER_WAN[side]}/24`)
      await ip(ns.router[side], ['route', 'add', 'default', 'via', PUBLIC_IP])
      await veth(ns.router[side], 'lan', ns.lan[side], 'eth0')
      await up(ns.router[side], 'lan', `${LAN[side]}.1/24`)
      await up(ns.lan[side], 'eth0', `${LAN[side]}.2/24`)
      await ip(ns.lan[side], ['route', 'add', 'default', 'via', `${LAN[side]}.1`])
      // open peer: straight on the bridge
      await veth(ns.open[side], 'eth0', ns.public, `o${side}`)
      await ip(ns.public, ['link', 'set', `o${side}`, 'master', 'br0'])
      await up(ns.public, `o${side}`)
      await up(ns.open[side], 'eth0', `${OPEN_PEER[side]}/24`)
      await ip(ns.open[side], ['route', 'add', 'default', 'via', PUBLIC_IP])
    }
    await lab.setModes('open')
  } catch (err) {
    try { teardown() } catch { /* the build error says more */ }
    throw err
  }
  return lab
}

// ── peers: a Node process or a Chromium page each (test/fixtures/nat-peer.mjs), their JSON lines, a pair run ──

export type Stack = 'node-datachannel' | 'wrtc' | 'chromium'
export type Transport = 'auto' | 'webrtc' | 'relay'
/** Where a pc's bytes go: SPEC §8's pc.path, as the fixture reads it from the selected candidate pair. */
export interface Path {
  transport: string | null
  local: string | null
  remote: string | null
  protocol: string | null
  rtt: number | null
  /** The pair's addresses, 'ip:port' (not in pc.path; libwebrtc shows no ip for a remote prflx). */
  localAddress?: string
  remoteAddress?: string
  note?: string
}
/** One JSON line a peer printed (`arrived`: performance.now() when the test read it). */
export interface Line { ev: string, [key: string]: any }

const FIXTURE = fileURLToPath(new URL('./fixtures/nat-peer.mjs', import.meta.url))
const ROOT = fileURLToPath(new URL('..', import.meta.url))

/** Where a peer runs: what the Peer needs from a process or a page. */
interface PeerHost {
  /** Everything it printed, for failure messages. */
  output: () => string
  /** Resolves once it is gone. */
  readonly gone: Promise<unknown>
  isGone: () => boolean
  /** Ask for a 'final' line. */
  final: () => void
  /** Ask it to quit; resolves whether it had to be killed (it did not go within 2 s). */
  stop: () => Promise<boolean>
}

/** One peer and the JSON lines it printed. */
export class Peer {
  readonly lines: Line[] = []
  private waiters: Array<() => void> = []

  constructor (readonly name: string, readonly stack: Stack, readonly host: PeerHost) {
    void host.gone.then(() => this.wake())
  }

  /** A line arrived. */
  push (line: Line): void {
    line.arrived = performance.now()
    this.lines.push(line)
    this.wake()
  }

  private wake (): void { for (const w of this.waiters.splice(0)) w() }

  first (ev: string): Line | undefined { return this.lines.find((l) => l.ev === ev) }

  /**
   * The first `ev` line, or a rejection once `deadline` (performance.now()) passed, the peer is
   * gone, or (for 'open' and 'done') its pc closed.
   */
  async wait (ev: string, deadline: number): Promise<Line> {
    for (;;) {
      const line = this.first(ev)
      if (line !== undefined) return line
      const left = deadline - performance.now()
      // a pc that closed never opens nor finishes its data
      const closed = (ev === 'open' || ev === 'done') && this.first('close') !== undefined
      if (left <= 0 || closed || this.host.isGone()) {
        const why = closed ? 'its pc closed first' : left <= 0 ? 'by the deadline' : 'before it was gone'
        throw new Error(`${this.name} (${this.stack}): no '${ev}' line: ${why}; it printed:\n${this.describe()}`)
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 100))
        this.waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  /** What it printed, candidates summarised (types and protocols), the last 3000 characters. */
  describe (): string {
    const candidates = this.lines.filter((l) => l.ev === 'candidate').map((l) => `${String(l.type)}/${String(l.protocol)}`)
    const text = this.host.output().split('\n').filter((l) => !l.includes('"ev":"candidate"')).join('\n')
    return `[candidates gathered: ${candidates.join(' ') || 'none'}]\n${text.slice(-3000)}`
  }

  stop (): Promise<boolean> { return this.host.stop() }
}

/** A Node peer: `node nat-peer.mjs '<config>'` inside `ns`, lines from its stdout. */
function processPeer (l: Lab, ns: string, name: string, stack: Stack, config: object): Peer {
  const proc = l.spawn(ns, process.execPath, [FIXTURE, JSON.stringify(config)])
  proc.child.stdin?.on('error', () => {}) // a peer that died (or froze and was killed) cannot read: its exit says more
  const isGone = (): boolean => proc.child.exitCode !== null || proc.child.signalCode !== null
  const peer = new Peer(name, stack, {
    output: proc.output,
    gone: proc.exited,
    isGone,
    final: () => { proc.child.stdin?.write('path\n') },
    stop: async () => {
      if (isGone()) return false
      proc.child.stdin?.end('quit\n')
      const late = new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), 2000))
      if (await Promise.race([proc.exited.then(() => 'gone' as const), late]) === 'gone') return false
      proc.child.kill('SIGKILL')
      await proc.exited
      return true
    }
  })
  let buffer = ''
  proc.child.stdout?.on('data', (d: Buffer) => {
    buffer += d.toString()
    let nl: number
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const text = buffer.slice(0, nl)
      buffer = buffer.slice(nl + 1)
      try { peer.push(JSON.parse(text)) } catch { /* a stray line from a native library */ }
    }
  })
  return peer
}

/**
 * The page's origin. Playwright answers its requests itself (page.route), so no web server runs;
 * the page's WebSocket and WebRTC traffic goes through the lab.
 */
const PAGE_ORIGIN = `http://${PUBLIC_IP}:8080`
const PAGE_FILES: Record<string, [string, string]> = {
  '/': ['', 'text/html; charset=utf-8'],
  '/signalyard.js': ['dist/browser/signalyard.js', 'text/javascript'],
  '/nat-peer.mjs': ['test/fixtures/nat-peer.mjs', 'text/javascript']
}
const PAGE_HTML = '<!doctype html><meta charset="utf-8"><title>NAT lab peer</title>' +
  '<script type="importmap">{"imports":{"signalyard":"/signalyard.js"}}</script>'

/** A Chromium peer: a page in a fresh context of the lab's browser for `ns`, lines polled from the page. */
async function pagePeer (l: Lab, ns: string, name: string, config: object): Promise<Peer> {
  const context = await (await l.browser(ns)).newContext()
  const page = await context.newPage()
  let out = ''
  let gone = false
  let markGone = (): void => {}
  const goneP = new Promise<void>((resolve) => { markGone = resolve })
  const close = async (): Promise<void> => {
    if (gone) return
    gone = true
    markGone()
    await context.close().catch(() => {})
  }
  page.on('pageerror', (err) => { out += `page error: ${err.message}\n` })
  page.on('console', (msg) => { out += `console.${msg.type()}: ${msg.text()}\n` })
  page.on('crash', () => { out += 'page crashed\n'; void close() })
  await page.route(`${PAGE_ORIGIN}/**`, async (route) => {
    const entry = PAGE_FILES[new URL(route.request().url()).pathname]
    if (entry === undefined) return await route.fulfill({ status: 404, body: 'not found' })
    const body = entry[0] === '' ? PAGE_HTML : await readFile(join(ROOT, entry[0]))
    await route.fulfill({ status: 200, contentType: entry[1], body })
  })
  await page.goto(`${PAGE_ORIGIN}/`)
  const peer = new Peer(name, 'chromium', {
    output: () => out,
    gone: goneP,
    isGone: () => gone,
    final: () => { void page.evaluate(() => (window as any).natPeer?.final()).catch(() => {}) },
    stop: async () => {
      if (gone) return false
      const quit = page.evaluate(() => (window as any).natPeer?.quit()).catch(() => {})
      const late = new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), 2000))
      const how = await Promise.race([quit.then(() => 'quit' as const), late])
      await close()
      return how === 'late'
    }
  })
  // the page's lines, polled
  let taken = 0
  const poll = async (): Promise<void> => {
    while (!gone) {
      try {
        const lines = await page.evaluate((from) => ((window as any).natLines ?? []).slice(from), taken) as Line[]
        taken += lines.length
        for (const line of lines) {
          out += JSON.stringify(line) + '\n'
          peer.push(line)
        }
      } catch (err) {
        if (!gone) out += `[natlab] reading the page: ${(err as Error).message}\n`
        break
      }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  void poll()
  // a string, not a function: tsx would wrap a function's inner arrows in a helper the page lacks
  void page.evaluate(`(async () => {
    window.natLines = []
    const { startPeer } = await import('/nat-peer.mjs')
    window.natPeer = await startPeer(${JSON.stringify(config)}, { RTCPeerConnection, print: (line) => { window.natLines.push(line) } })
  })()`).catch((err: Error) => { out += `[natlab] the page peer did not start: ${err.message}\n` })
  return peer
}

export interface PairOptions {
  yard: LabYard
  stacks: [Stack, Stack]
  transport: Transport
  connectTimeout: number
  /** Messages each side sends, and their size in bytes. */
  count: number
  size: number
  /** Message i goes no earlier than i × spreadMs / count after a side starts (0: at once): the data spans the moves. */
  spreadMs?: number
  /**
   * When both sides' final path is read: once both are done and both are on WebRTC, or else
   * `settleMs` after a's 'open' (e.g. connectTimeout + 0.5 s, by when a first WebRTC attempt has
   * connected or was given up), and at least `finalAfterMove` after the last 'transport' line of either side (an ICE agent may
   * start on a lower pair and switch: libjuice uses its first succeeded pair at once and
   * nominates a better one for up to 2 s, its NOMINATION_TIMEOUT).
   */
  settleMs?: number
  finalAfterMove?: number
  /** The peers make and close one RTCPeerConnection before listening (the fixture's `warm`). */
  warm?: boolean
  /** A pair that has not exchanged everything by then (ms after both listen) fails; 15 s if not given. */
  deadline?: number
  /** Runs once a opened, while the data flows (e.g. to break the path when a tenth has arrived). */
  during?: (a: Peer, b: Peer) => Promise<void>
}

/** A pair's lines: a's 'open', both 'done' lines, and both 'final' lines (the path it ended on). */
export interface PairResult { a: Peer, b: Peer, open: Line, done: { a: Line, b: Line }, final: { a: Line, b: Line } }

/** The IP of an 'ip:port' address ('' when unknown). */
export const ipOf = (address: string | undefined): string => address === undefined ? '' : address.slice(0, address.lastIndexOf(':'))

/**
 * Whether side `p` sends through coturn: from or to a relay candidate. A relay candidate first
 * seen in a check shows as a prflx remote at coturn's address (libwebrtc hides that address:
 * then the other side's own view says whether it was its relay candidate).
 */
export const throughCoturn = (p: Path, other: Path): boolean => p.local === 'relay' || p.remote === 'relay' ||
  ipOf(p.remoteAddress) === PUBLIC_IP || (ipOf(p.remoteAddress) === '' && other.local === 'relay')

/**
 * The tier a pair ended on, from both sides' paths: 'host' (both ends host, a host learnt from a
 * check may show as prflx), 'srflx' (hole punched: a reflexive end, no coturn), 'TURN/UDP' or
 * 'TURN/TCP' (through coturn; the protocol of a side with a local relay candidate), 'relay' (the
 * server's WebSocket relay on both sides), or 'mixed: …' when the sides disagree.
 */
export function tierOf (pa: Path, pb: Path): string {
  if (pa.transport !== pb.transport || (pa.transport !== 'webrtc' && pa.transport !== 'relay')) return `mixed: ${String(pa.transport)} / ${String(pb.transport)}`
  if (pa.transport === 'relay') return 'relay'
  if (throughCoturn(pa, pb) || throughCoturn(pb, pa)) {
    const side = pa.local === 'relay' ? pa : pb.local === 'relay' ? pb : pa
    return `TURN/${String(side.protocol).toUpperCase()}`
  }
  const hostish = (t: string | null): boolean => t === 'host' || t === 'prflx'
  if (pa.local === 'host' && pb.local === 'host' && hostish(pa.remote) && hostish(pb.remote)) return 'host'
  return 'srflx'
}

/** A pair's times in ms from a's connect() (null: it never happened). */
export interface PairTimings {
  /** a's 'open' (with 'auto': on the relay). */
  open: number
  /** The first message delivered: a's at b, b's at a. */
  firstAtB: number | null
  firstAtA: number | null
  /** Each side's frames moved to WebRTC (its first 'transport' 'webrtc' line). */
  webrtcA: number | null
  webrtcB: number | null
}

/** The times of a pair from its lines (the peers' `at` epoch stamps, one clock: one machine). */
export function timings (r: { a: Peer, b: Peer, open: Line }): PairTimings {
  const t0 = r.a.first('connect')?.at as number
  const since = (line: Line | undefined): number | null => line === undefined ? null : Math.round((line.at as number) - t0)
  const webrtc = (p: Peer): Line | undefined => p.lines.find((l) => l.ev === 'transport' && l.transport === 'webrtc')
  return {
    open: since(r.open) as number,
    firstAtB: since(r.b.first('first')),
    firstAtA: since(r.a.first('first')),
    webrtcA: since(webrtc(r.a)),
    webrtcB: since(webrtc(r.b))
  }
}

/**
 * One pair through the lab in its current modes: b listens (in its side's namespace), a connects;
 * both run the numbered messages; both are stopped after. Several may run at once (each has its
 * own signalling namespace); flush conntrack before starting them, not while one runs.
 */
/**
 * Pair starts that take turns: each `await turn()` waits for the starts before it and returns the
 * function that lets the next one go. A start (spawning both processes, connect(), the first
 * message) is one pair's alone, so a first byte is not measured while another pair launches
 * its processes (two Chromiums on 2 cores take a second); the rest runs side by side.
 */
export function takeTurns (): () => Promise<() => void> {
  let turn: Promise<void> = Promise.resolve()
  return async () => {
    let release = (): void => {}
    const mine = new Promise<void>((resolve) => { release = resolve })
    const wait = turn
    turn = turn.then(async () => await mine)
    await wait
    return release
  }
}

/** runPair, its start taking its turn (takeTurns): the next start goes once b has a's first message. */
export async function runPairInTurn (l: Lab, options: PairOptions, turn: () => Promise<() => void>): Promise<PairResult> {
  const release = await turn()
  return await runPair(l, {
    ...options,
    during: async (a, b) => {
      await b.wait('first', performance.now() + 5000).catch(() => {})
      release()
      await options.during?.(a, b)
    }
  }).finally(release)
}

export async function runPair (l: Lab, options: PairOptions): Promise<PairResult> {
  const namespace = `nat-lab-${randomBytes(6).toString('hex')}`
  const spawnPeer = async (side: 'a' | 'b', stack: Stack, peer: string | null): Promise<Peer> => {
    const config = {
      url: options.yard.url, namespace, id: side, peer, stack, transport: options.transport,
      connectTimeout: options.connectTimeout, count: options.count, size: options.size, spreadMs: options.spreadMs ?? 0, warm: options.warm ?? false
    }
    return stack === 'chromium' ? await pagePeer(l, l.peerNs(side), side, config) : processPeer(l, l.peerNs(side), side, stack, config)
  }
  const b = await spawnPeer('b', options.stacks[1], null)
  let a: Peer | null = null
  /** Stop both (once); the peers that had to be killed. */
  let stopped: Promise<Peer[]> | null = null
  const stopAll = (): Promise<Peer[]> => stopped ??= (async () => {
    const peers = [a, b].filter((p): p is Peer => p !== null)
    const killed = await Promise.all(peers.map(async (p) => await p.stop()))
    return peers.filter((_, i) => killed[i])
  })()
  try {
    await b.wait('listening', performance.now() + 5000)
    a = await spawnPeer('a', options.stacks[0], 'b')
    await a.wait('listening', performance.now() + 5000)
    const deadline = performance.now() + (options.deadline ?? 15_000)
    const open = await a.wait('open', deadline)
    const openedAt = performance.now()
    await options.during?.(a, b)
    const done = { a: await a.wait('done', deadline), b: await b.wait('done', deadline) }
    // settle: until both sides are on WebRTC, or settleMs after a's open
    const onWebRtc = (p: Peer): boolean => p.lines.filter((l) => l.ev === 'transport').at(-1)?.transport === 'webrtc'
    while (performance.now() < openedAt + (options.settleMs ?? 0) && !(onWebRtc(a) && onWebRtc(b))) await new Promise((resolve) => setTimeout(resolve, 50))
    const lastMove = Math.max(openedAt, ...[a, b].flatMap((p) => p.lines.filter((l) => l.ev === 'transport').map((l) => l.arrived as number)))
    const finalAt = lastMove + (options.finalAfterMove ?? 0)
    if (finalAt > performance.now()) await new Promise((resolve) => setTimeout(resolve, finalAt - performance.now()))
    for (const p of [a, b]) p.host.final()
    const final = { a: await a.wait('final', deadline + 5000), b: await b.wait('final', deadline + 5000) }
    return { a, b, done, final, open }
  } catch (err) {
    const error = err as Error
    // the other side's story too: a failure on one side often starts on the other
    const other = error.message.startsWith('a ') ? b : a
    if (other !== null) error.message += `\n${other.name} (${other.stack}) printed:\n${other.describe()}`
    // where each side stands (messages, the stack's counters), if it still answers within 2 s
    const asked = performance.now() + 2000
    for (const p of [a, b]) if (p !== null && p.first('final') === undefined) p.host.final()
    for (const p of [a, b]) {
      if (p === null) continue
      const final = await p.wait('final', asked).catch(() => null)
      error.message += `\n${p.name} (${p.stack}) at the end: ${final === null ? 'no answer' : JSON.stringify({ counts: final.counts, transport: final.transport, stats: final.stats })}`
    }
    const frozen = (await stopAll()).filter((p) => p.stack === 'node-datachannel')
    for (const p of frozen) {
      const last = p.lines.filter((l) => l.ev !== 'candidate').at(-1)
      const neverUp = p.lines.find((l) => l.ev === 'transport' && l.transport === 'webrtc') === undefined
      error.message += `\n${p.name} (node-datachannel) froze: it did not exit within 2 s of "quit" and was killed; its last line was '${String(last?.ev)}' at ${String(last?.ms)} ms.` + (neverUp
        ? ' WebRTC never connected, then the whole process stopped (the relay with it): the signature of libdatachannel\'s DTLS start deadlock on TURN-relayed connections ' +
          '(upstream PR #1630, not in node-datachannel 0.33.4; NAT_PEER_LOG=Debug shows ICE connected and DTLS started, never finished), ' +
          'after which the JS thread blocks in the first call into that RTCPeerConnection (a trickled candidate, getStats, close).'
        : '')
    }
    throw error
  } finally {
    const killed = await stopAll()
    if (killed.length > 0) console.log(`  note: ${killed.map((p) => `${p.name} (${p.stack})`).join(' and ')} did not exit within 2 s of "quit" and was killed`)
  }
}

