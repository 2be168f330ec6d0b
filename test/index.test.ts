// The package's main entry exposes the library API that the README shows.
import { describe, expect, it } from 'vitest';
import * as vtv from '../src/index.js';

describe('package entry', () => {
  it('exports the engine, presets, data, metrics, conversion and the method', () => {
    expect(typeof vtv.Engine.open).toBe('function');
    expect(vtv.preset('tiny').encDim).toBe(64);
    expect(typeof vtv.data.buildCanvas).toBe('function');
    expect(typeof vtv.metrics.iou).toBe('function');
    expect(typeof vtv.convertCheckpoints).toBe('function');
    expect(typeof vtv.runSearch).toBe('function');
    expect(typeof vtv.writeReport).toBe('function');
    expect(vtv.REFERENCE_SEARCH.samplesPerStep).toBe(320);
    expect(typeof vtv.TaskVector.load).toBe('function');
    expect(typeof vtv.Engine.prototype.apply).toBe('function');
    expect(typeof vtv.collectPairsTask).toBe('function');
    expect(typeof vtv.data.findPairs).toBe('function');
  });
});
