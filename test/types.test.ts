// test/types.test.ts — the published types as a user's TypeScript sees them: `tsc -p test/types`
// checks test/types/usage.ts against dist/types (what npm ships), with skipLibCheck off. Typed
// payloads must accept the right type and refuse the wrong one, and internals (what the library
// calls or mutates: pc.start, pc.cid, node.received, stream.frame, …) must not be there; each such
// line is under `@ts-expect-error`, which fails the check when the line compiles.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

test('test/types/usage.ts type-checks against the built declarations (typed payloads, no internals)', () => {
  const tsc = spawnSync(process.execPath, [`${root}node_modules/typescript/bin/tsc`, '-p', 'test/types'], { cwd: root, encoding: 'utf8' })
  assert.is(tsc.status, 0, `tsc -p test/types:\n${tsc.stdout}${tsc.stderr}`)
})

test('the declarations of PeerConnection, PeerNode, Stream and Peers list none of their internals', () => {
  const dts = (file: string): string => readFileSync(`${root}dist/types/src/client/${file}.d.ts`, 'utf8')
  // A member line: `name(…): …;` or `name: …;` (a constructor parameter, `cid: string);`, is not one).
  const member = (name: string): RegExp => new RegExp(`^\\s+(readonly )?${name}(<.*>)?(\\(.*\\): .*|\\??: [^;)]*);$`, 'm')
  for (const [file, names] of [
    ['peer-connection', ['start', 'accept', 'handle', 'lost', 'leave', 'cid', 'initiator']],
    ['peer-node', ['received', 'unreachable', 'peerGone']],
    ['stream', ['sid', 'topic', 'socketOpened', 'socketDown', 'refused', 'frame', 'event']],
    ['presence', ['snapshot', 'change']],
    ['peer-stream', ['opened', 'finish']]
  ] as const) {
    for (const name of names) assert.not.match(dts(file), member(name), `${file}.d.ts: ${name}`)
  }
  assert.match(dts('peer-connection'), member('createStream'), 'the public members are there')
})

test.run()
