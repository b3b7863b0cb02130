/**
 * The server's endpoint table: one OpenHandler per endpoint of the protocol, in one place. Typed
 * over the protocol's Endpoint list, so an endpoint added to the protocol does not compile until
 * the server has a handler for it here. Each handler opens its endpoint's stream class.
 */
import type { Endpoints } from '../context.js'
import { openEcho } from './echo.js'
import { openKv } from './kv.js'
import { openPeers } from './peers.js'
import { openRelay } from './relay.js'
import { openSignal } from './signal.js'

/** The OpenHandler of each endpoint. */
export const endpoints: Endpoints = { echo: openEcho, kv: openKv, relay: openRelay, peers: openPeers, signal: openSignal }
