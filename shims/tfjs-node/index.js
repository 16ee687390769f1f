// Shim for danfojs-node: the real @tensorflow/tfjs-node downloads libtensorflow at install time.
// It re-exports the pure-JS umbrella package. The kit's backend probe recognises it by its version (3.99.0-shim).
module.exports = require('@tensorflow/tfjs');
