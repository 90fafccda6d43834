// One spike of function instances with a Node.js driver, as users write them: each instance opens
// its own connection from DATABASE_URL exactly as given, runs a few parameterised queries (more
// than any driver's prepare threshold), and closes. Prints one JSON line: {"ok", "failed", "errors"}.
//   node spike.mjs <pg|postgres|postgres-as-printed> <instances> <rounds>    (the URL comes from $COMPAT_URL)
// Settings per driver are the README's client table; the test passes nothing else.
import { readFileSync } from 'node:fs'
import pg from 'pg'
import postgres from 'postgres'

const [driver, instancesArg, roundsArg] = process.argv.slice(2)
const url = process.env.COMPAT_URL
const instances = Number(instancesArg)
const rounds = Number(roundsArg)

// postgres.js sends every query parameter it does not know to the server as a startup parameter,
// and reads no CA file: the README's setting moves sslrootcert from the URL into `ssl.ca`.
function postgresJsOptions(raw) {
  const parsed = new URL(raw)
  const rootcert = parsed.searchParams.get('sslrootcert')
  parsed.searchParams.delete('sslrootcert')
  const options = { max: 1 }
  if (rootcert) options.ssl = { ca: readFileSync(rootcert, 'utf8') }
  return [parsed.toString(), options]
}

async function withPg() {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    for (let i = 0; i < rounds; i++) {
      const { rows } = await client.query({ text: 'SELECT $1::int + 1 AS n, current_user AS u', values: [i] })
      if (rows[0].n !== i + 1) throw new Error(`wrong row ${JSON.stringify(rows[0])}`)
      await client.query({ name: 'lifeguard-credits', text: 'SELECT credits FROM orgs WHERE name = $1', values: ['acme'] })
    }
  } finally {
    await client.end()
  }
}

async function withPostgresJs(asPrinted = false) {
  const [target, options] = asPrinted ? [url, { max: 1 }] : postgresJsOptions(url)
  const sql = postgres(target, options)
  try {
    for (let i = 0; i < rounds; i++) {
      const [row] = await sql`SELECT ${i}::int + 1 AS n, current_user AS u`
      if (row.n !== i + 1) throw new Error(`wrong row ${JSON.stringify(row)}`)
      await sql`SELECT credits FROM orgs WHERE name = ${'acme'}`
    }
  } finally {
    await sql.end({ timeout: 5 })
  }
}

// postgres-as-printed: without the README's setting, to show why the table needs it.
const run = { pg: withPg, postgres: withPostgresJs, 'postgres-as-printed': () => withPostgresJs(true) }[driver]
if (!run || !url || !(instances > 0) || !(rounds > 0)) {
  console.error('usage: COMPAT_URL=... node spike.mjs <pg|postgres|postgres-as-printed> <instances> <rounds>')
  process.exit(2)
}
const results = await Promise.allSettled(Array.from({ length: instances }, () => run()))
const errors = {}
for (const r of results) {
  if (r.status === 'rejected') {
    const key = `${r.reason?.code ?? ''} ${r.reason?.message ?? r.reason}`.trim().slice(0, 200)
    errors[key] = (errors[key] ?? 0) + 1
  }
}
const failed = results.filter((r) => r.status === 'rejected').length
console.log(JSON.stringify({ ok: instances - failed, failed, errors }))
