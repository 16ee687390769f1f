/**
 * vitpeft recipes — the paper configurations and the code that runs them: the only layer that imports both the
 * primitives (`lib/`) and the data loaders (`data-loaders/`). A recipe is plain data (recipe.ts); `prepareRecipe`
 * builds one (session.ts), `runRecipe` runs it into a run folder and `resumeRun` continues one (run.ts); `RECIPES`
 * holds the paper configurations and the notebooks' small ones (presets.ts). The command line is cli.ts
 * (`npx vitpeft run …`).
 */
export * from './explora-presets';
export * from './finetune';
export * from './pyra-presets';
export * from './explora-mae';
export * from './explora-dino';
export * from './explora-dino-ablation';
export * from './explora-dino-notebook';
export * from './explora-mae-notebook';
export * from './miniature';
export * from './miniature-eval';
export * from './miniature-presets';
export * from './workstation-presets';
export * from './explora-dino-arms';
export * from './miniature-claims';
export * from './miniature-notebook';
export * from './supervised';
export * from './source-vit';
export { RecipeError } from './schema';
export * from './recipe';
export * from './data';
export * from './model';
export * from './session';
export * from './run';
export * from './run-side-by-side';
export * from './plan';
export * from './presets';
export * from './source-mae';
export * from './report';
export * from './explora-compare';
export * from './explora-finetune-notebook';
export * from './pyra-compare';
export * from './vtab';
export * from './pyra-vtab';
export * from './pyra-compression';
export * from './beyondrgb-smoke';
export * from './beyondrgb-wilds';
export * from './beyondrgb-spacenet';
export * from './beyondrgb-multispectral';
export * from './beyondrgb-temporal';
