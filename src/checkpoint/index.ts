// Public API of checkpoint conversion and the safetensors format.
export { convertCheckpoints, type ConvertOptions, type ConvertSummary } from './convert.js';
export {
  readSafetensors, readSafetensorsHeader, writeSafetensors, planSafetensors, SafetensorsWriter, SafetensorsError,
  type SafeTensor, type SafetensorsDType, type SafetensorsHeader, type TensorSpec, type TensorData,
} from './safetensors.js';
export { TorchCheckpoint, CheckpointError, type TorchCheckpointOptions } from './torch-checkpoint.js';
export { TensorRef, UnsafePickleError } from './torch-globals.js';
export { PickleError } from './pickle.js';
export { ZipError } from './zip.js';
export { maeKeys, vqDecodeKeys, vqEncodeKeys } from './keys.js';
export { inferDims, inferConfig } from './infer-config.js';
