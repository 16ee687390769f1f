// Mocha reporter: the usual spec output, plus a machine-readable summary in out/test-summary.json
// ({passes, failures, pending, tests, durationMs, failed: [titles]}). `node test/reporter.js --summary <file>` prints
// that summary as the one closing line .ci/run ends with: "N passed, N failed, N skipped" (skipped = mocha's pending:
// it.skip, this.skip(), and every test of a suite whose before hook skipped).
'use strict';
const fs = require('fs');
const path = require('path');

/** The closing line for a summary object. */
function summaryLine(s) {
  return `${s.passes || 0} passed, ${s.failures || 0} failed, ${s.pending || 0} skipped`;
}

if (require.main === module) {
  const i = process.argv.indexOf('--summary');
  const file = i >= 0 ? process.argv[i + 1] : undefined;
  let s;
  try {
    s = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    console.log(summaryLine({ failures: 1 })); // no (readable) summary: the run did not complete
    process.exit(0);
  }
  console.log(summaryLine(s));
  process.exit(0);
}

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
module.exports.summaryLine = summaryLine;
