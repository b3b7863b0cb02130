// examples/chat — a browser chat over peer connections (WebRTC, with the relay as a fallback).
//
// One command serves everything on one port: the page (index.html), its icon, the browser bundle
// of the client (at /signalyard.js, from the package's dist/browser/signalyard.js) and the
// signalyard server itself (WebSocket upgrades on the same port, so the page connects to its own
// origin).
//
// Run it from the repository root (after `npm install`, which builds dist/):
//
//   node examples/chat/server.mjs            # http://127.0.0.1:8080/
//   PORT=3001 node examples/chat/server.mjs  # another port (PORT=0 picks a free one)
//
// then open the printed URL in two (or more) tabs, enter a name in each and chat. Each tab shows
// who is online and, per peer, whether the messages go over WebRTC or through the server's relay;
// Leave (top right) leaves the room. ?room=name picks a separate room (default "lobby"; the join
// form can change it too), ?transport=relay forces the relay.
//
// It listens on 127.0.0.1 only. This page has no server of its own to point at, so SIGNALYARD_URL
// (which the other examples honour) does not apply here: the server below is the chat's server.
// Ctrl-C (SIGINT) or SIGTERM stops it.
import { readFile } from 'node:fs/promises'
import { createServer as createHttpServer } from 'node:http'
import { fileURLToPath } from 'node:url'
import { createServer } from 'signalyard/server'

const port = process.env.PORT === undefined || process.env.PORT === '' ? 8080 : Number(process.env.PORT)
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`PORT must be a port number, not ${JSON.stringify(process.env.PORT)}`)

// The browser bundle of the installed package ('signalyard/package.json' is exported for this).
const bundle = fileURLToPath(new URL('dist/browser/signalyard.js', import.meta.resolve('signalyard/package.json')))
const here = (file) => fileURLToPath(new URL(file, import.meta.url))
const FILES = {
  '/': [here('index.html'), 'text/html; charset=utf-8'],
  '/index.html': [here('index.html'), 'text/html; charset=utf-8'],
  '/favicon.svg': [here('favicon.svg'), 'image/svg+xml'],
  // Some browsers ask for /favicon.ico whatever the page links: the same icon.
  '/favicon.ico': [here('favicon.svg'), 'image/svg+xml'],
  '/signalyard.js': [bundle, 'text/javascript; charset=utf-8']
}

const http = createHttpServer((req, res) => {
  const entry = FILES[new URL(req.url ?? '/', 'http://localhost').pathname]
  if (entry === undefined || (req.method !== 'GET' && req.method !== 'HEAD')) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
    return
  }
  readFile(entry[0]).then(
    (body) => res.writeHead(200, { 'content-type': entry[1], 'cache-control': 'no-cache' }).end(req.method === 'HEAD' ? undefined : body),
    (err) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`)
  )
})

// The signalyard server shares the HTTP server: it takes the WebSocket upgrades, the files above
// take the rest.
const yard = await createServer({ server: http })

await new Promise((resolve, reject) => {
  http.once('error', reject)
  http.listen(port, '127.0.0.1', resolve)
}).catch((err) => fail(err.code === 'EADDRINUSE' ? `port ${port} is in use (set PORT to another one)` : err.message))

console.log(`chat on http://127.0.0.1:${http.address().port}/ (open it in two tabs)`)

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    await yard.close()
    http.closeAllConnections()
    http.close(() => process.exit(0))
  })
}

function fail (why) {
  console.error(`chat server: ${why}`)
  process.exit(1)
}
