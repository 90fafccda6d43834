// A node-pg-migrate migration as a user would write it (CommonJS), run by tests/migrator/test_tools.py
// through `python -m migrator run -- node-pg-migrate up`, which reads DATABASE_URL.
exports.up = (pgm) => {
  pgm.createTable("gadgets", { id: "id", name: { type: "text", notNull: true } });
  // Slow enough for a second run started alongside to have to wait for this one.
  pgm.sql("SELECT pg_sleep(1)");
};

exports.down = (pgm) => {
  pgm.dropTable("gadgets");
};
