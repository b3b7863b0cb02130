// test/ops.test.ts — what an operator's tooling meets: /healthz and /metrics answer GET and HEAD
// only (405 with `Allow: GET, HEAD` to anything else), on the client port and on the separate
// metrics port; and the yard's log says when Redis is lost and when it is back, with how long it
// was down.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { request } from 'node:http'
import { createServer, redisBroker, type Yard } from 'signalyard/server'
import { startRedis } from './redis.js'
import { fetchText, until } from './helpers.js'

interface Answer { status: number, headers: Record<string, string | string[] | undefined>, body: string }

/** One HTTP request with any method (and an optional body), on a fresh connection. */
function send (url: string, method: string, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d) => { text += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }))
    })
    req.on('error', reject)
    req.setTimeout(2000, () => req.destroy(new Error(`${method} ${url} timed out`)))
    req.end(body)
  })
}

const WRITE_METHODS = ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']

/** Every write method on `url` gets 405, says which methods it takes, and changes nothing. */
async function refusesWrites (url: string): Promise<void> {
  for (const method of WRITE_METHODS) {
    const res = await send(url, method, method === 'POST' || method === 'PUT' ? '{"status":"down"}' : undefined)
    assert.is(res.status, 405, `${method} ${url}`)
    assert.is(res.headers.allow, 'GET, HEAD', `${method} ${url}: the Allow header`)
  }
}

/** HEAD answers as GET does, status and content type, without a body. */
async function headLikeGet (url: string): Promise<void> {
  const get = await send(url, 'GET')
  const head = await send(url, 'HEAD')
  assert.is(get.status, 200, `GET ${url}`)
  assert.ok(get.body.length > 0, `GET ${url} has a body`)
  assert.is(head.status, get.status, `HEAD ${url}: same status as GET`)
  assert.is(head.headers['content-type'], get.headers['content-type'], `HEAD ${url}: same content type as GET`)
  assert.is(head.body, '', `HEAD ${url}: no body`)
}

test('/healthz and /metrics on the client port: GET and HEAD answer, POST and other writes get 405 with Allow: GET, HEAD', async () => {
  const yard = await createServer({ port: 0, host: '127.0.0.1' })
  try {
    const base = yard.url.replace('ws:', 'http:')
    for (const path of ['healthz', 'metrics']) {
      await refusesWrites(base + path)
      await headLikeGet(base + path)
    }
    assert.is(JSON.parse((await send(base + 'healthz', 'GET')).body).status, 'ok', 'a refused POST changed nothing')
    // Other paths keep their answers: a POST elsewhere is still 404, not 405.
    assert.is((await send(base + 'elsewhere', 'POST', 'x')).status, 404)
  } finally {
    await yard.close()
  }
})

test('metrics.port: both routes refuse writes with 405 on the metrics server; /metrics is not on the client port, whatever the method', async () => {
  const yard = await createServer({ port: 0, host: '127.0.0.1', metrics: { port: 0, host: '127.0.0.1' } })
  try {
    const metricsBase = `${String(yard.metricsUrl).replace(/\/metrics$/, '')}/`
    assert.match(metricsBase, /^http:\/\/127\.0\.0\.1:\d+\/$/)
    for (const path of ['healthz', 'metrics']) {
      await refusesWrites(metricsBase + path)
      await headLikeGet(metricsBase + path)
    }
    const base = yard.url.replace('ws:', 'http:')
    await refusesWrites(base + 'healthz')
    for (const method of ['GET', 'POST']) assert.is((await send(base + 'metrics', method)).status, 404, `${method} /metrics on the client port`)
  } finally {
    await yard.close()
  }
})

test('metrics.token: a POST to /metrics is 405 (the method is wrong whoever asks); GET without the token stays 401', async () => {
  const yard = await createServer({ port: 0, host: '127.0.0.1', metrics: { token: 'ops-token' } })
  try {
    const url = yard.url.replace('ws:', 'http:') + 'metrics'
    const post = await send(url, 'POST')
    assert.is(post.status, 405)
    assert.is(post.headers.allow, 'GET, HEAD')
    assert.is((await send(url, 'GET')).status, 401)
    assert.is((await send(url, 'HEAD')).status, 401)
  } finally {
    await yard.close()
  }
})

test('Redis lost, then back: the yard logs a warn when it goes and an info "redis recovered after N ms" when it is back', async () => {
  const redis = await startRedis()
  const broker = redisBroker({ url: redis.url, heartbeat: 100, deadAfter: 1000 })
  const lines: Array<{ level: string, message: string, reason: string, at: number }> = []
  let yard: Yard | null = null
  try {
    yard = await createServer({
      port: 0,
      host: '127.0.0.1',
      broker,
      logger: (level, message, fields) => { lines.push({ level, message, reason: String(fields?.reason), at: performance.now() }) }
    })
    const health = yard.url.replace('ws:', 'http:') + 'healthz'
    assert.equal(lines, [], 'nothing logged while Redis is up')
    const killedAt = performance.now()
    await redis.restart(300)
    const recovered = (): typeof lines[number] | undefined => lines.find((l) => /^redis recovered after \d+ ms$/.test(l.reason))
    await until(() => recovered() !== undefined, 10_000, `the recovery line; logged: ${JSON.stringify(lines)}`)
    const back = recovered() as typeof lines[number]
    assert.is(back.level, 'info')
    assert.is(back.message, 'broker available')
    const lost = lines.findIndex((l) => l.level === 'warn' && l.message.startsWith('broker unavailable'))
    assert.ok(lost >= 0 && lost < lines.indexOf(back), `the loss is logged before the recovery: ${JSON.stringify(lines)}`)
    // The downtime it reports is the time between the two lines (rounded), and covers the 300 ms
    // Redis was away.
    const downMs = Number(/(\d+) ms/.exec(back.reason)?.[1])
    assert.ok(downMs >= 250, `down at least as long as Redis was away: ${downMs} ms`)
    assert.ok(Math.abs(downMs - (back.at - lines[lost].at)) <= 2, `${downMs} ms is the time between the lines (${Math.round(back.at - lines[lost].at)} ms)`)
    assert.ok(downMs <= back.at - killedAt + 2, 'not longer than since Redis was killed')
    await until(async () => (await fetchText(health)).status === 200, 5000, '/healthz ok again')
    assert.is(lines.filter((l) => l.level === 'info').length, 1, 'one recovery line for one loss')
  } finally {
    await yard?.close()
    await broker.close()
    await redis.stop()
  }
})

test.run()
