// Mocha's spec reporter, plus one closing line that CI reads: "N passed, N failed[, N skipped]".
// CommonJS because mocha loads reporters with require().
'use strict';
const Mocha = require('mocha');

class CountReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    runner.on(Mocha.Runner.constants.EVENT_TEST_PASS, () => passed++);
    runner.on(Mocha.Runner.constants.EVENT_TEST_FAIL, () => failed++);
    runner.on(Mocha.Runner.constants.EVENT_TEST_PENDING, () => skipped++);
    runner.once(Mocha.Runner.constants.EVENT_RUN_END, () => {
      // After the spec reporter's epilogue, so it is the last line mocha prints.
      process.nextTick(() => console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`));
    });
  }
}

module.exports = CountReporter;
