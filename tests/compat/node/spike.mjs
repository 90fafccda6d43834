// One spike of function instances with a Node.js driver, as users write them: each instance opens
// its own connection from DATABASE_URL exactly as given, runs a few parameterised queries (more
// than any driver's prepare threshold), and closes. Prints one JSON line: {"ok", "failed", "errors"}.
//   node spike.mjs <pg|postgres|postgres-ca-option|drizzle> <instances> <rounds>    (the URL comes from $COMPAT_URL)
// The rest of the environment is what `lifeguard local env` prints (NODE_EXTRA_CA_CERTS: the pooler's
// CA). Settings per driver are the README's client table; the test passes nothing else.
import { readFileSync } from 'node:fs'
import { eq, sql as drizzleSql } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/node-postgres'
import { integer, pgTable, serial, text } from 'drizzle-orm/pg-core'
import pg from 'pg'
import postgres from 'postgres'

const [driver, instancesArg, roundsArg] = process.argv.slice(2)
const url = process.env.COMPAT_URL
const instances = Number(instancesArg)
const rounds = Number(roundsArg)

// The migrations' table, as a Drizzle schema (only the columns read here).
const orgs = pgTable('orgs', { id: serial('id').primaryKey(), name: text('name').notNull(), credits: integer('credits').notNull() })

// Straight to Postgres only (DATABASE_URL_UNPOOLED): Postgres refuses the sslrootcert postgres.js
// sends as a startup parameter, and Node does not trust its CA, so the README's setting moves
// sslrootcert from the URL into `ssl.ca`.
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

async function withPostgresJs(caOption = false) {
  // `max: 1`: one connection per instance, as the README's table says (no TLS setting).
  const [target, options] = caOption ? postgresJsOptions(url) : [url, { max: 1 }]
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

async function withDrizzle() {
  // Drizzle over one node-postgres client per instance, from the URL as given.
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const db = drizzle({ client })
    for (let i = 0; i < rounds; i++) {
      const [row] = await db.select({ credits: orgs.credits }).from(orgs).where(eq(orgs.name, 'acme'))
      if (!(row?.credits >= 0)) throw new Error(`wrong row ${JSON.stringify(row)}`)
      const [{ n }] = (await db.execute(drizzleSql`SELECT ${i}::int + 1 AS n`)).rows
      if (n !== i + 1) throw new Error(`wrong n ${n}`)
    }
  } finally {
    await client.end()
  }
}

const run = {
  pg: withPg, postgres: () => withPostgresJs(false), 'postgres-ca-option': () => withPostgresJs(true), drizzle: withDrizzle,
}[driver]
if (!run || !url || !(instances > 0) || !(rounds > 0)) {
  console.error('usage: COMPAT_URL=... node spike.mjs <pg|postgres|postgres-ca-option|drizzle> <instances> <rounds>')
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
