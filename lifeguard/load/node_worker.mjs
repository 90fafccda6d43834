// The local invoker's worker for a Node.js function: lifeguard/load/invoker.py's JSON-lines protocol
// (a job, `ready`, `go`, progress and result lines), hosting many instances in one Node.js process.
//   node node_worker.mjs <installed function folder> <module>      (run by WorkerPool, not by hand)
// An instance is its own Database (one connection, opened on its first invocation, kept while warm)
// and the module's handle(event, database), as a Lambda instance runs it. Node.js is asynchronous:
// `threads` bounds how many invocations are in flight, as the Python worker's thread pool does.
import { createInterface } from 'node:readline'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

const [folder, module] = process.argv.slice(2)
const fn = await import(pathToFileURL(join(folder, `${module}.mjs`)).href)
const { Database } = await import(pathToFileURL(join(folder, 'db.mjs')).href)

// The protocol owns stdout. Thousands of identical function log lines would drown it; each
// instance's database warnings are captured below instead (the database's words behind a 503).
const write = process.stdout.write.bind(process.stdout)
process.stdout.write = () => true
const send = (message) => write(`${JSON.stringify(message)}\n`)

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]()
async function receive() {
  const { value, done } = await lines.next()
  if (done) process.exit(0) // the parent went away: nothing left to report to
  return JSON.parse(value)
}
async function expect(kind) {
  const message = await receive()
  if (message.type !== kind) throw new Error(`expected '${kind}' from the parent, got '${message.type}'`)
  return message
}

class Instance {
  constructor() {
    this.lastWarning = null
    this.database = new Database({
      log: (level, message) => { if (level === 'WARNING' && this.lastWarning === null) this.lastWarning = message },
    })
  }

  async invoke(event) {
    const start = performance.now()
    this.lastWarning = null
    let response
    try {
      response = await fn.handle(structuredClone(event), this.database)
    } catch (error) {
      return { ok: false, elapsed: performance.now() - start, error: `unhandled ${error?.name ?? 'Error'}`, db: this.dbError() }
    }
    const elapsed = performance.now() - start
    if (response.statusCode === 200) return { ok: true, elapsed }
    let error = String(response.statusCode)
    try {
      const body = JSON.parse(response.body)
      error = `${response.statusCode} ${body.error ?? ''}`.trim() + (body.reason ? ` (${body.reason})` : '')
    } catch {
      // not JSON: the status alone
    }
    return { ok: false, elapsed, error, db: this.dbError() }
  }

  // "database connect failed: overloaded (error [53300]: sorry, too many clients already)" -> the driver's words.
  dbError() {
    const match = /\]: (.*)\)$/s.exec(this.lastWarning ?? '')
    return match ? match[1].replace(/\s+/g, ' ').trim().slice(0, 200) : null
  }
}

class Tally {
  constructor() {
    Object.assign(this, { done: 0, ok: 0, failed: 0, latencies: [], connects: [], errors: {}, dbErrors: {} })
  }

  add(outcome, sinceGoMs = null) {
    this.done += 1
    if (outcome.ok) {
      this.ok += 1
      this.latencies.push(round(sinceGoMs ?? outcome.elapsed))
      if (sinceGoMs !== null) this.connects.push(round(outcome.elapsed))
    } else {
      this.failed += 1
      this.errors[outcome.error] = (this.errors[outcome.error] ?? 0) + 1
      if (outcome.db) this.dbErrors[outcome.db] = (this.dbErrors[outcome.db] ?? 0) + 1
    }
  }

  report(type, cpuSince) {
    return {
      type, done: this.done, ok: this.ok, failed: this.failed, cpu_s: cpuSince === null ? null : round(cpuSeconds() - cpuSince, 4),
      latencies_ms: this.latencies, instance_ms: this.connects, errors: this.errors, db_errors: this.dbErrors,
    }
  }
}

const round = (value, digits = 3) => Number(value.toFixed(digits))
const cpuSeconds = () => {
  const { user, system } = process.cpuUsage()
  return (user + system) / 1e6
}

// Runs `work(item)` for every item, at most `limit` at once.
async function bounded(items, limit, work) {
  let next = 0
  const lane = async () => {
    while (next < items.length) await work(items[next++])
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane))
}

async function withProgress(tally, body) {
  let last = -1
  const timer = setInterval(() => {
    if (tally.done !== last) {
      send({ type: 'progress', done: tally.done, ok: tally.ok, failed: tally.failed })
      last = tally.done
    }
  }, 100)
  try {
    await body()
  } finally {
    clearInterval(timer)
  }
}

async function spike(job) {
  const instances = Array.from({ length: Number(job.instances) }, () => new Instance())
  const threads = Number(job.threads)
  send({ type: 'ready' })
  await expect('go')
  const go = performance.now()
  let cpu = cpuSeconds()
  const cold = new Tally()
  await withProgress(cold, () => bounded(instances, threads, async (instance) => {
    const outcome = await instance.invoke(job.event)
    cold.add(outcome, performance.now() - go)
  }))
  send(cold.report('cold', cpu))
  let message = await receive()
  if (message.type === 'warm') {
    const warm = new Tally()
    cpu = cpuSeconds()
    await withProgress(warm, () => bounded(instances, threads, async (instance) => warm.add(await instance.invoke(job.event))))
    // A warm call must reuse the instance's connection: count any extra connection opened.
    send({ ...warm.report('warm', cpu), reconnects: instances.reduce((n, i) => n + Math.max(0, i.database.stats.connects - 1), 0) })
    message = await receive()
  }
  if (message.type !== 'release') throw new Error(`expected 'release' from the parent, got '${message.type}'`)
  await Promise.all(instances.map((instance) => instance.database.close()))
  send({ type: 'closed' })
}

async function churn(job) {
  const tally = new Tally()
  send({ type: 'ready' })
  await expect('go')
  const cpu = cpuSeconds()
  const deadline = performance.now() + Number(job.duration_s) * 1000
  const loop = async () => {
    while (performance.now() < deadline) {
      const instance = new Instance()
      try {
        tally.add(await instance.invoke(job.event))
      } finally {
        await instance.database.close()
      }
    }
  }
  await Promise.all(Array.from({ length: Number(job.threads) }, loop))
  send(tally.report('churn', cpu))
}

const job = await receive()
const mode = { spike, churn }[job.mode]
if (!mode) throw new Error(`the Node.js worker runs spike and churn jobs, not '${job.mode}'`)
await mode(job)
process.exit(0)
