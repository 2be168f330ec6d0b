// The part of the engine the method needs. The real Engine (src/engine.ts) satisfies it; tests use a
// small fake with the same forward() contract so the method is testable without the native addon.
import type { Engine } from '../engine.js';

export type ForwardEngine = Pick<Engine, 'config' | 'forward'>;
