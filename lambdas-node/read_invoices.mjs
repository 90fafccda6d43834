// read_invoices, on Node.js: an organisation and its newest invoices, in one statement.
// lambdas/read_invoices.py's contract: event {"org_id": <int>}; 200 with {"org", "invoices", "has_more"}
// (newest first, at most MAX_INVOICES), 404 for an unknown organisation, 400 for a bad event, 503 when
// the database is unavailable, 500 misconfigured.
import { error, log, requireInt, requireObject, respond, run } from './api.mjs'
import { Database } from './db.mjs'

export const NAME = 'read_invoices'
export const MAX_INVOICES = 100

// One round trip: the org joined with its newest invoices (one more than shown, to tell whether there
// are more). An unknown org gives no row at all.
const QUERY = `
SELECT o.id, o.name, o.credits, i.id AS invoice_id, i.amount, i.issued_at
FROM orgs o
LEFT JOIN LATERAL (
    SELECT id, amount, issued_at FROM invoices
    WHERE org_id = o.id
    ORDER BY issued_at DESC, id DESC
    LIMIT $2
) i ON true
WHERE o.id = $1
ORDER BY i.issued_at DESC, i.id DESC
`

// Postgres' timestamptz text ('2026-01-02 03:04:05.123456+01') as Python's isoformat() in UTC
// ('2026-01-02T02:04:05.123456+00:00'; no fraction when it is zero), microseconds kept.
export function isoUtc(text) {
  const m = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?$/.exec(text)
  if (!m) throw new Error('unexpected timestamptz text (DateStyle must be ISO)')
  const [, y, mo, d, h, mi, s, frac = '', sign, oh, om = '0', os = '0'] = m
  const offsetMs = (sign === '-' ? -1 : 1) * ((+oh * 60 + +om) * 60 + +os) * 1000
  const utc = new Date(Date.UTC(+y, +mo - 1, +d, +h, +mi, +s) - offsetMs).toISOString().slice(0, 19)
  const micros = frac.padEnd(6, '0')
  return `${utc}${micros === '000000' ? '' : `.${micros}`}+00:00`
}

async function read(event, database) {
  const fields = requireObject(event, ['org_id'])
  const orgId = requireInt(fields, 'org_id')
  const rows = await database.transaction(
    async (query) => (await query('lifeguard-read-invoices', QUERY, [orgId, MAX_INVOICES + 1])).rows,
    { readOnly: true },
  )
  if (!rows.length) return error(404, 'org_not_found', `no organisation with id ${orgId}`)
  const invoices = rows.filter((r) => r.invoice_id !== null)
    .map((r) => ({ id: r.invoice_id, amount: r.amount, issued_at: isoUtc(r.issued_at) }))
  const org = rows[0]
  return respond(200, {
    org: { id: org.id, name: org.name, credits: org.credits },
    invoices: invoices.slice(0, MAX_INVOICES),
    has_more: invoices.length > MAX_INVOICES,
  })
}

// The handler body with the instance's Database passed in (the local invoker, tests).
export function handle(event, database) {
  return run(NAME, () => read(event, database))
}

// The instance's database when running as a Lambda function: configured from the environment on
// the first invocation, then kept while the instance is warm.
const instance = new Database({ log })

export async function handler(event) {
  return handle(event, instance)
}
