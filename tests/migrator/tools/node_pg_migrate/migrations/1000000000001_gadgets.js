// A node-pg-migrate migration as a user would write it (CommonJS), run by tests/migrator/test_tools.py
// through `python -m migrator run -- node-pg-migrate up`, which reads DATABASE_URL.
exports.up = (pgm) => {
  pgm.createTable("gadgets", { id: "id", name: { type: "text", notNull: true } });
  // A test holds this run here, while a table named migration_gate exists, until a second run waits for it.
  pgm.sql(
    "DO $$ BEGIN WHILE EXISTS (SELECT FROM pg_tables WHERE schemaname = current_schema()" +
      " AND tablename = 'migration_gate') LOOP PERFORM pg_sleep(0.05); END LOOP; END $$",
  );
};

exports.down = (pgm) => {
  pgm.dropTable("gadgets");
};
