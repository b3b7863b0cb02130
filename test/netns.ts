/**
 * A private network namespace with only loopback, for test files that run WebRTC in Chromium
 * (which gathers ICE candidates on every interface): the file re-runs itself under
 * `unshare -n` (root) or `unshare -rn` (user namespaces) with `ip link set lo up`, so Node, the
 * yard and Chromium have 127.0.0.1 and nothing else. SIGNALYARD_NETNS=off skips the namespace.
 */
import { spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

/** The environment variable: `lo` inside the namespace (set by the re-run), `off` to skip it. */
export const NETNS_ENV = 'SIGNALYARD_NETNS'

/**
 * Run the test file `fileUrl` (its `import.meta.url`) in a loopback-only namespace. In the parent
 * this re-runs the file there and exits with the child's code (it never returns). It returns
 * `true` inside the namespace, and `false` when the namespace is off or cannot be made here; in
 * the latter case it prints a note ending with `fallback` (what the file does instead).
 *
 * Under CI (`CI=true`) the weaker checks are not an option: a namespace that is off or cannot be
 * made throws (the file fails, saying why) instead of falling back.
 */
export async function loopbackOnly (fileUrl: string, fallback: string): Promise<boolean> {
  if (process.env[NETNS_ENV] === 'lo') {
    console.log('network: a private namespace with only lo (127.0.0.1)')
    return true
  }
  const ci = process.env.CI === 'true' || process.env.CI === '1'
  const refuse = (why: string): never => {
    throw new Error(`CI=true: ${why}; under CI the WebRTC checks must run in a loopback-only network namespace ` +
      `instead of weakening (${fallback}). .ci/run installs iproute2 and util-linux and runs as root.`)
  }
  if (process.env[NETNS_ENV] === 'off') {
    if (ci) refuse(`${NETNS_ENV}=off`)
    return false
  }
  const unshare = process.getuid?.() === 0 ? ['-n'] : ['-rn']
  const upLo = 'ip link set lo up'
  const probe = spawnSync('unshare', [...unshare, 'sh', '-c', upLo], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] })
  if (probe.status === 0) {
    const child = spawn('unshare', [...unshare, 'sh', '-c', `${upLo} && exec "$@"`, 'sh', process.execPath, ...process.execArgv, fileURLToPath(fileUrl)], {
      stdio: 'inherit', env: { ...process.env, [NETNS_ENV]: 'lo' }
    })
    const code = await new Promise<number>((resolve) => {
      child.on('error', () => resolve(1))
      child.on('exit', (c, signal) => resolve(c ?? (signal !== null ? 1 : 0)))
    })
    process.exit(code)
  }
  const why = `\`unshare ${unshare.join(' ')} sh -c '${upLo}'\` failed (${probe.error?.message ?? `exit ${String(probe.status)}: ${(probe.stderr ?? '').trim()}`})`
  if (ci) refuse(why)
  console.log(`note: ${why}: running without a private network namespace; ${fallback}`)
  return false
}
