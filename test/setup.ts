/**
 * Mocha root hooks: start the kit's backend once (wasm here; `VITPEFT_BACKEND` forces another) before any test.
 */
import { init } from '../lib/backend';

export const mochaHooks = {
  async beforeAll(this: Mocha.Context): Promise<void> {
    this.timeout(60000);
    await init();
  },
};
