// test/chat.test.ts — examples/chat as its header says: `node examples/chat/server.mjs` with PORT
// serves the page, its icon and the bundle, and runs the yard on the same port; Chromium pages
// (Debian's /usr/bin/chromium through playwright-core, see browser-helpers.ts), one browser
// context per person, join a room and chat.
//
// What a user relies on, checked from outside the page: the room from ?room= (or the join form) is
// the one shown and the one joined; messages arrive both ways as text (never HTML) with an HH:MM
// time; the online list names each member with the path that carries the messages to them
// (WebRTC, or the relay when a side forces it with ?transport=relay), or "connecting…" for a member
// whose connection has not opened (it is in the room all the same); a taken name is refused;
// Leave takes you off the others' lists at once (well inside the server's 3 s grace for a vanished
// socket) and Join works again without a reload; Invite copies the room's link (or shows it where
// the clipboard is not allowed); at 375×700 (a phone) every control, the Join
// button first, is inside the viewport with nothing over it, nothing scrolls sideways and the
// online list sits above the messages instead of on them. No page errors and no console errors
// in any page of any test (a missing icon would be one).
//
// Network: 127.0.0.1 only. Chromium gathers ICE candidates on every interface, so this file re-runs
// itself in a private network namespace with only `lo` up (test/netns.ts). Where that is not
// possible the pages use the relay (?transport=relay) and no WebRTC runs between them.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Page } from 'playwright-core'
import { assertPortTaken, assertServesBundleAndYard, assertServesPageAndIcon, startExampleServer, type ExampleServer, closeBrowser, newContext, scoped, withTimeout, type Defer } from './browser-helpers.js'
import { fetchText, freePort, until } from './helpers.js'
import { loopbackOnly } from './netns.js'

const ISOLATED = await loopbackOnly(import.meta.url,
  'the chat pages talk through the relay (?transport=relay) and no WebRTC runs between them')
/** The URL option every page gets, and the path the online list must then show. */
const FORCE = ISOLATED ? '' : '&transport=relay'
const EXPECTED = ISOLATED ? 'webrtc' : 'relay'

const root = fileURLToPath(new URL('..', import.meta.url))
const PHONE = { width: 375, height: 700 }
const DESKTOP = { width: 1280, height: 720 }
/** Connecting a pair (WebRTC on a loaded machine included). */
const CONNECT_MS = 10_000
/** Leave must show well before the server's 3 s grace for a socket that vanished. */
const LEAVE_MS = 2000

test.after(closeBrowser)
test.before.each(() => { problems = [] }) // a failed test's leftovers are its own

// ── the server ──

/** `node examples/chat/server.mjs` on a free port (browser-helpers.ts). */
const startChat = async (defer: Defer): Promise<ExampleServer> => await startExampleServer(defer, 'chat', 'chat')

// ── pages ──

/** Every page's uncaught errors and console errors; `noPageErrors()` at the end of a test checks them. */
let problems: string[] = []
function noPageErrors (): void {
  const all = problems
  problems = []
  assert.equal(all, [], 'no page errors and no console errors in the chat pages')
}

/** Open the chat in a browser context of its own (one per person), without joining. */
async function open (defer: Defer, origin: string, query: string, who: string, viewport = DESKTOP): Promise<Page> {
  const context = await newContext(defer, { rtcOrigin: origin })
  const page = await context.newPage()
  await page.setViewportSize(viewport)
  page.on('pageerror', (err) => problems.push(`${who}: page error: ${err.message}`))
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`${who}: console error: ${msg.text()}`) })
  await page.goto(`${origin}/${query}`)
  await page.waitForSelector('#join:not([disabled])')
  return page
}

/** Enter `name`, press Join, wait until joined (the message box shows). */
async function joinAs (page: Page, name: string): Promise<void> {
  await page.fill('#name', name)
  await page.click('#join')
  try {
    await page.waitForSelector('#chat-form:not([hidden])', { timeout: 5000 })
  } catch (err) {
    throw new Error(`${name} did not join: status "${await page.textContent('#status')}"; ${problems.join('; ') || (err as Error).message}`)
  }
}

async function chatTab (defer: Defer, origin: string, query: string, name: string, viewport = DESKTOP): Promise<Page> {
  const page = await open(defer, origin, query, name, viewport)
  await joinAs(page, name)
  return page
}

/** The online list: [name, path shown] per row, you first. */
const online = (page: Page): Promise<Array<[string, string]>> =>
  page.$$eval('#online li', (items) => items.map((li) => [(li as HTMLElement).dataset.peer ?? '', (li as HTMLElement).dataset.transport ?? ''] as [string, string]))

/** Wait until `page` lists `peer` with path `want` ('webrtc' or 'relay'); the label says it too. */
async function connected (page: Page, peer: string, want: string, who: string): Promise<void> {
  try {
    // 'auto' shows the relay first and WebRTC once the connection moved: wait for the one expected.
    await page.waitForFunction(([peer, want]) => [...document.querySelectorAll<HTMLElement>('#online li')]
      .some((li) => li.dataset.peer === peer && li.dataset.transport === want), [peer, want], { timeout: CONNECT_MS })
  } catch {
    throw new Error(`${who} does not show ${peer} on ${want} within ${CONNECT_MS} ms (list: ${JSON.stringify(await online(page))})`)
  }
  const label = await page.textContent(`#online li[data-peer="${peer}"] .path`)
  assert.is(label, want === 'webrtc' ? 'WebRTC' : 'relay', `${who}'s label for ${peer}`)
}

async function say (page: Page, text: string): Promise<void> {
  await page.fill('#message', text)
  await page.press('#message', 'Enter')
}

interface Shown { from: string, who: string, text: string, time: string, iso: string, mine: boolean }

/** The messages in the log, oldest first. */
const messages = (page: Page): Promise<Shown[]> => page.$$eval('#log li.msg', (items) => items.map((li) => ({
  from: (li as HTMLElement).dataset.from ?? '',
  who: li.querySelector('.from')?.textContent ?? '',
  text: li.querySelector('.text')?.textContent ?? '',
  time: li.querySelector('time')?.textContent ?? '',
  iso: li.querySelector('time')?.getAttribute('datetime') ?? '',
  mine: li.classList.contains('me')
})))

/** Wait until `page` shows `text` from `from`; returns that message. */
async function shows (page: Page, from: string, text: string, who: string): Promise<Shown> {
  try {
    await page.waitForFunction(([from, text]) => [...document.querySelectorAll<HTMLElement>('#log li.msg')]
      .some((li) => li.dataset.from === from && li.querySelector('.text')?.textContent === text), [from, text], { timeout: 5000 })
  } catch {
    throw new Error(`${who} does not show ${JSON.stringify(text)} from ${from}; the log: "${await page.textContent('#log')}"`)
  }
  return (await messages(page)).find((m) => m.from === from && m.text === text)!
}

/** The page's local HH:MM of an ISO time (the page's clock and time zone, as the user sees them). */
const localHhMm = (page: Page, iso: string): Promise<string> => page.evaluate((iso) => {
  const d = new Date(iso)
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`
}, iso)

/** A message's time: HH:MM of its `datetime`, which lies between `before` and `after`. */
async function stamped (page: Page, m: Shown, before: number, after: number, who: string): Promise<void> {
  assert.match(m.time, /^\d\d:\d\d$/, `${who}: the time of ${JSON.stringify(m.text)} is HH:MM`)
  const at = Date.parse(m.iso)
  assert.ok(at >= before - 1000 && at <= after + 1000, `${who}: ${m.iso} is when the message was sent or arrived`)
  assert.is(m.time, await localHhMm(page, m.iso), `${who}: the time shown is the local time`)
}

/**
 * The controls the page shows now (buttons and inputs): each inside the viewport, at least 24 px,
 * and the topmost element at its centre; nothing scrolls sideways (or at all: the log scrolls
 * inside). Returns their ids.
 */
async function controlsClear (page: Page, where: string): Promise<string[]> {
  // (no named functions inside evaluate: tsx wraps them in a helper the page does not have)
  const report = await page.evaluate(() => {
    const vw = document.documentElement.clientWidth
    const vh = document.documentElement.clientHeight
    const controls = [...document.querySelectorAll<HTMLElement>('button, input')].filter((el) => el.getClientRects().length > 0)
    const out = controls.map((el) => {
      const r = el.getBoundingClientRect()
      const inside = r.left >= 0 && r.top >= 0 && r.right <= vw && r.bottom <= vh && r.width >= 24 && r.height >= 24
      const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2)
      const onTop = top !== null && (top === el || el.contains(top))
      return { id: el.id, ok: inside && onTop, why: `#${el.id}: box ${Math.round(r.left)},${Math.round(r.top)} ${Math.round(r.width)}×${Math.round(r.height)} in ${vw}×${vh}; at its centre: ${top === null ? 'nothing' : `${top.tagName.toLowerCase()}#${top.id}.${top.getAttribute('class') ?? ''}`}` }
    })
    const el = document.documentElement
    return { out, sideways: el.scrollWidth > vw, down: el.scrollHeight > vh, size: `${el.scrollWidth}×${el.scrollHeight}` }
  })
  assert.equal(report.out.filter((c) => !c.ok).map((c) => c.why), [], `${where}: every control is inside the viewport and uncovered`)
  assert.not.ok(report.sideways, `${where}: nothing scrolls sideways (the page is ${report.size})`)
  assert.not.ok(report.down, `${where}: the page itself does not scroll (${report.size}); the log scrolls inside`)
  return report.out.map((c) => c.id).sort()
}

type Box = { left: number, top: number, right: number, bottom: number, width: number, height: number }

/** The boxes of the parts of the page. */
const boxes = (page: Page): Promise<Record<'header' | 'aside' | 'log' | 'bar', Box>> => page.evaluate(() => {
  const bar = document.querySelector('#chat-form')!.getClientRects().length > 0 ? '#chat-form' : '#join-form'
  const [header, aside, log, form] = ['header', '#people-panel', '#log', bar].map((sel) => document.querySelector(sel)!.getBoundingClientRect().toJSON() as Box)
  return { header, aside, log, bar: form }
})

const overlap = (a: Box, b: Box): boolean => a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5

// ── the tests ──

test('examples/chat: one command serves the page, its icon and the bundle, and the yard on PORT (127.0.0.1); SIGTERM stops it', async () => {
  await scoped(async (defer) => {
    const chat = await startChat(defer)
    await assertServesPageAndIcon(chat.origin)
    await assertServesBundleAndYard(chat.origin, 'chat lobby')

    chat.child.kill('SIGTERM')
    assert.is(await withTimeout(chat.exited, 5000, 'the chat server exits on SIGTERM'), 0, `exit code; stderr: ${chat.stderr()}`)
  })
})

test('examples/chat: a taken PORT is an error (exit 1) that says so', async () => {
  await scoped(async (defer) => {
    const chat = await startChat(defer)
    const port = new URL(chat.origin).port
    await assertPortTaken(defer, 'examples/chat/server.mjs', port, `chat server: port ${port} is in use`)
  })
})

test('examples/chat: the header says how to run it', () => {
  const source = readFileSync(`${root}examples/chat/server.mjs`, 'utf8')
  const header = source.split('\n').filter((l) => l.startsWith('//')).join('\n')
  assert.match(header, 'node examples/chat/server.mjs')
  assert.match(header, 'PORT')
  assert.match(header, '?room=')
  assert.match(source, /from 'signalyard\/server'/)
})

test(`examples/chat: two people in ?room=… see it, see each other ${ISOLATED ? 'over WebRTC' : 'on the relay'}, chat both ways with HH:MM times; Leave takes one off the other's list at once; Join works again`, async () => {
  await scoped(async (defer) => {
    const chat = await startChat(defer)
    const query = `?room=Book%20club${FORCE}`
    const alice = await open(defer, chat.origin, query, 'alice')
    assert.is(await alice.textContent('#room'), 'Book club', 'the header names the room from the URL')
    assert.is(await alice.inputValue('#room-name'), 'Book club')
    assert.is(await alice.title(), 'Book club — chat')
    await joinAs(alice, 'alice')
    const bob = await chatTab(defer, chat.origin, query, 'bob')

    // Each lists itself first, then the other on the path the connection took.
    await connected(alice, 'bob', EXPECTED, 'alice')
    await connected(bob, 'alice', EXPECTED, 'bob')
    assert.equal(await online(alice), [['alice', 'you'], ['bob', EXPECTED]])
    assert.equal(await online(bob), [['bob', 'you'], ['alice', EXPECTED]])
    assert.match(await alice.textContent('#people') ?? '', '2 online')
    assert.match(await alice.textContent('#log') ?? '', 'bob joined', 'alice sees bob arrive')
    assert.match(await bob.textContent('#log') ?? '', 'You joined “Book club” with alice.')

    // Both ways, with times; the text stays text.
    let before = Date.now()
    await say(alice, 'hello bob')
    const got = await shows(bob, 'alice', 'hello bob', 'bob')
    let after = Date.now()
    assert.is(got.who, 'alice')
    assert.not.ok(got.mine)
    await stamped(bob, got, before, after, 'bob')
    const sent = await shows(alice, 'alice', 'hello bob', 'alice')
    assert.ok(sent.mine, 'alice\'s own message is marked hers')
    assert.is(sent.who, 'You')
    await stamped(alice, sent, before, after, 'alice')

    before = Date.now()
    await say(bob, 'hi alice <b>not bold</b> & ✓')
    const reply = await shows(alice, 'bob', 'hi alice <b>not bold</b> & ✓', 'alice')
    after = Date.now()
    await stamped(alice, reply, before, after, 'alice')
    assert.is(await alice.$$eval('#log b', (b) => b.length), 0, 'messages are text, not HTML')
    assert.equal((await messages(alice)).map((m) => [m.from, m.text]), [['alice', 'hello bob'], ['bob', 'hi alice <b>not bold</b> & ✓']], 'in order, once each')

    // Leave: bob is off alice's list at once (not after the server's 3 s grace), and his page is
    // back at the join form with his name kept.
    const left = Date.now()
    await bob.click('#leave')
    await alice.waitForFunction(() => document.querySelector('#online li[data-peer="bob"]') === null, null, { timeout: LEAVE_MS })
      .catch(() => { throw new Error(`bob is still on alice's list ${LEAVE_MS} ms after Leave`) })
    assert.ok(Date.now() - left < LEAVE_MS)
    assert.equal(await online(alice), [['alice', 'you']])
    assert.match(await alice.textContent('#log') ?? '', 'bob left')
    assert.ok(await bob.isVisible('#join-form'), 'bob sees the join form again')
    assert.ok(await bob.isHidden('#chat-form') && await bob.isHidden('#leave') && await bob.isHidden('#people-panel'))
    assert.is(await bob.inputValue('#name'), 'bob')
    assert.match(await bob.textContent('#log') ?? '', 'You left “Book club”.')
    // What alice says now does not reach him.
    await say(alice, 'are you there?')
    await shows(alice, 'alice', 'are you there?', 'alice')

    // Join again, without a reload: connected again, and the chat works.
    await joinAs(bob, 'bob')
    await connected(alice, 'bob', EXPECTED, 'alice after bob came back')
    await connected(bob, 'alice', EXPECTED, 'bob after coming back')
    await say(bob, 'back')
    await shows(alice, 'bob', 'back', 'alice')
    await say(alice, 'welcome back')
    await shows(bob, 'alice', 'welcome back', 'bob')
    assert.not.ok((await messages(bob)).some((m) => m.text === 'are you there?'), 'bob did not get what was said while he was away')
    noPageErrors()
  })
})

test('examples/chat ?transport=relay in one tab: both tabs show the relay, and the chat works over it; Invite gives the room\'s link', async () => {
  await scoped(async (defer) => {
    const chat = await startChat(defer)
    const carol = await chatTab(defer, chat.origin, '?room=side', 'carol')
    const dave = await chatTab(defer, chat.origin, '?room=side&transport=relay', 'dave')
    await connected(carol, 'dave', 'relay', 'carol')
    await connected(dave, 'carol', 'relay', 'dave')
    assert.match(await carol.getAttribute('#online li[data-peer="dave"] .path', 'title') ?? '', 'through the signalyard server')
    await say(dave, 'over the relay')
    await shows(carol, 'dave', 'over the relay', 'carol')
    await say(carol, 'got it')
    await shows(dave, 'carol', 'got it', 'dave')

    // Invite copies the link to the room (without dave's ?transport=relay); where the page may not
    // use the clipboard, the link shows in the log instead.
    await dave.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: chat.origin })
    await dave.click('#invite')
    await dave.waitForFunction(() => document.querySelector('#invite')?.textContent === 'Copied', null, { timeout: 3000 })
    assert.is(await dave.evaluate(() => navigator.clipboard.readText()), `${chat.origin}/?room=side`)
    await carol.click('#invite')
    await carol.waitForFunction(() => document.querySelector('#log')?.textContent?.includes('The link to this room:'), null, { timeout: 3000 })
    assert.match(await carol.textContent('#log') ?? '', `The link to this room: ${chat.origin}/?room=side`)
    noPageErrors()
  })
})

test('examples/chat: a member whose connection cannot open (one tab forces WebRTC, the other the relay) is still listed, as connecting…, and counted; its coming and going are in the log', async () => {
  await scoped(async (defer) => {
    const chat = await startChat(defer)
    const gil = await chatTab(defer, chat.origin, '?room=mixed&transport=webrtc', 'gil')
    const hal = await chatTab(defer, chat.origin, '?room=mixed&transport=relay', 'hal')
    for (const [page, peer, who] of [[gil, 'hal', 'gil'], [hal, 'gil', 'hal']] as const) {
      await page.waitForFunction((peer) => document.querySelector<HTMLElement>(`#online li[data-peer="${peer}"]`)?.dataset.transport === 'connecting', peer, { timeout: 3000 })
        .catch(async () => { throw new Error(`${who} does not list ${peer} as connecting (list: ${JSON.stringify(await online(page))})`) })
      assert.is(await page.textContent(`#online li[data-peer="${peer}"] .path`), 'connecting…', `${who}'s label for ${peer}`)
      assert.is(await page.textContent('#people'), '2 online', `${who} counts ${peer}`)
    }
    assert.match(await gil.textContent('#log') ?? '', 'hal joined', 'gil sees hal arrive, connection or not')
    assert.match(await hal.textContent('#log') ?? '', 'You joined “mixed” with gil.')

    // hal leaves: off gil's list at once, and said in the log.
    await hal.click('#leave')
    await gil.waitForFunction(() => document.querySelector('#online li[data-peer="hal"]') === null, null, { timeout: LEAVE_MS })
      .catch(() => { throw new Error(`hal is still on gil's list ${LEAVE_MS} ms after Leave`) })
    assert.equal(await online(gil), [['gil', 'you']])
    assert.match(await gil.textContent('#log') ?? '', 'hal left')
    noPageErrors()
  })
})

test('examples/chat: a taken name is refused; another room is another chat (the join form picks it, the URL follows); a closed tab goes offline', async () => {
  await scoped(async (defer) => {
    const chat = await startChat(defer)
    const erin = await chatTab(defer, chat.origin, `?room=one${FORCE}`, 'erin')

    // A second erin in room one is refused, and says why.
    const other = await open(defer, chat.origin, `?room=one${FORCE}`, 'second erin')
    await other.fill('#name', 'erin')
    await other.click('#join')
    await other.waitForFunction(() => document.querySelector('#status')?.textContent?.includes('taken'), null, { timeout: 5000 })
    assert.is(await other.textContent('#status'), '“erin” is taken in this room: pick another name.')
    assert.ok(await other.isHidden('#chat-form'), 'not joined')
    assert.ok(await other.isEnabled('#join'), 'Join can be pressed again')

    // The same name in room two: the form changes the room, the header and the URL follow.
    await other.fill('#room-name', 'two')
    await joinAs(other, 'erin')
    assert.is(await other.textContent('#room'), 'two')
    assert.match(other.url(), /\?room=two(&|$)/)
    assert.equal(await online(other), [['erin', 'you']], 'room two has only its own erin')
    assert.match(await other.textContent('#log') ?? '', 'Nobody else is here yet')
    await say(other, 'room two only')
    const frank = await chatTab(defer, chat.origin, `?room=one${FORCE}`, 'frank')
    await connected(frank, 'erin', EXPECTED, 'frank')
    await say(frank, 'room one only')
    await shows(erin, 'frank', 'room one only', 'erin')
    assert.not.ok((await messages(other)).some((m) => m.text === 'room one only'), 'room two does not hear room one')
    assert.not.ok((await messages(erin)).some((m) => m.text === 'room two only'), 'room one does not hear room two')

    // A closed tab leaves at once too (the page leaves on pagehide).
    await frank.close()
    await erin.waitForFunction(() => document.querySelector('#online li[data-peer="frank"]') === null, null, { timeout: LEAVE_MS })
      .catch(() => { throw new Error(`frank is still on erin's list ${LEAVE_MS} ms after his tab closed`) })
    noPageErrors()
  })
})

test(`examples/chat at 375×700 (a phone): Join and every control are inside the viewport and uncovered, nothing scrolls sideways, the online list sits above the messages — before joining, in a room of three, after leaving${ISOLATED ? '' : ' (relay)'}`, async () => {
  await scoped(async (defer) => {
    const chat = await startChat(defer)
    const query = `?room=phone${FORCE}`
    const phone = await open(defer, chat.origin, query, 'phone', PHONE)
    assert.equal(await controlsClear(phone, 'before joining'), ['invite', 'join', 'name', 'room-name'])

    // Joined, with two others whose long names fill the list, and a long unbroken message.
    await joinAs(phone, 'Pat')
    const names = ['Alexandria-Catherine Montgomery-Smythe', 'Bartholomew Fitzwilliam the Third']
    const desks = []
    for (const name of names) desks.push(await chatTab(defer, chat.origin, query, name))
    for (const name of names) await connected(phone, name, EXPECTED, 'the phone')
    await say(desks[0], 'x'.repeat(400))
    await shows(phone, names[0], 'x'.repeat(400), 'the phone')
    for (let i = 0; i < 30; i++) await say(desks[1], `line ${i}`) // more than the log can show
    await shows(phone, names[1], 'line 29', 'the phone')
    assert.equal(await controlsClear(phone, 'in a room of three'), ['invite', 'leave', 'message', 'send'])
    const b = await boxes(phone)
    assert.ok(b.aside.top >= b.header.bottom - 0.5 && b.aside.bottom <= b.log.top + 0.5, `the online list (${JSON.stringify(b.aside)}) is between the header and the messages (${JSON.stringify(b.log)})`)
    assert.ok(b.aside.width >= PHONE.width - 1, 'the online list spans the width')
    assert.ok(b.log.bottom <= b.bar.top + 0.5, 'the messages end above the message box')
    assert.ok(Math.abs(b.bar.bottom - PHONE.height) < 1, `the message box is at the bottom of the screen (${JSON.stringify(b.bar)})`)
    assert.ok(b.log.height >= 400, `the messages keep most of the screen (${Math.round(b.log.height)} px)`)
    const newest = await phone.$eval('#log', (log) => {
      const last = log.lastElementChild!.getBoundingClientRect()
      const box = log.getBoundingClientRect()
      return last.bottom <= box.bottom + 0.5 && last.top >= box.top - 0.5
    })
    assert.ok(newest, 'the newest message is in view (the log follows the conversation)')
    const widest = await phone.$$eval('#log li', (items) => Math.max(...items.map((li) => li.getBoundingClientRect().right)))
    assert.ok(widest <= PHONE.width, `no message sticks out of the screen (right edge ${widest})`)

    // The desktop page puts the list beside the messages, and covers nothing either.
    const d = await boxes(desks[1])
    assert.ok(d.aside.left >= d.log.right - 0.5 && !overlap(d.aside, d.log) && !overlap(d.aside, d.bar), 'on a desktop the online list is beside the messages')
    assert.ok(Math.abs(d.bar.bottom - DESKTOP.height) < 1 && Math.abs(d.aside.bottom - DESKTOP.height) < 1, 'on a desktop the message box and the list reach the bottom')
    await controlsClear(desks[1], 'desktop in a room of three')

    // Left: the join form again, uncovered.
    await phone.click('#leave')
    await phone.waitForSelector('#join-form:not([hidden])')
    assert.equal(await controlsClear(phone, 'after leaving'), ['invite', 'join', 'name', 'room-name'])
    noPageErrors()
  })
})

test.run()
