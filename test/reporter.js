// Mocha reporter: the usual spec output, plus a machine-readable summary in out/test-summary.json
// ({passes, failures, pending, tests, durationMs, failed: [titles]}) that .ci/run turns into "N passed, N failed".
'use strict';
const fs = require('fs');
const path = require('path');
const Mocha = require('mocha');

class SpecWithSummary extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    const failed = [];
    runner.on(Mocha.Runner.constants.EVENT_TEST_FAIL, (test, err) => {
      failed.push(`${test.fullTitle()}: ${String(err && err.message).split('\n')[0]}`);
    });
    runner.once(Mocha.Runner.constants.EVENT_RUN_END, () => {
      const s = runner.stats || {};
      const out = path.resolve(process.env.VITPEFT_TEST_SUMMARY || 'out/test-summary.json');
      fs.mkdirSync(path.dirname(out), { recursive: true });
      fs.writeFileSync(out, JSON.stringify({
        passes: s.passes || 0, failures: s.failures || 0, pending: s.pending || 0, tests: s.tests || 0,
        durationMs: s.duration || 0, failed,
      }, null, 2));
    });
  }
}
module.exports = SpecWithSummary;
