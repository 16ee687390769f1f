/**
 * vitpeft recipes — the paper configurations and the code that runs them: the only layer that imports both the
 * primitives (`lib/`) and the data loaders (`data-loaders/`).
 */
export * from './finetune';
export * from './pyra-presets';
export * from './explora-mae';
export * from './explora-dino';
export * from './supervised';
export * from './source-vit';
export * from './beyondrgb-smoke';
