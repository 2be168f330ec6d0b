// Public API of checkpoint conversion and the safetensors format.
export { type ConvertOptions, type ConvertSummary, convertCheckpoints } from './convert.js';
export { inferConfig, inferDims } from './infer-config.js';
export { maeKeys, vqDecodeKeys, vqEncodeKeys } from './keys.js';
export { PickleError } from './pickle.js';
export {
  planSafetensors,
  readSafetensors,
  readSafetensorsHeader,
  type SafeTensor,
  type SafetensorsDType,
  SafetensorsError,
  type SafetensorsHeader,
  SafetensorsWriter,
  type TensorData,
  type TensorSpec,
  writeSafetensors,
} from './safetensors.js';
export { CheckpointError, TorchCheckpoint, type TorchCheckpointOptions } from './torch-checkpoint.js';
export { TensorRef, UnsafePickleError } from './torch-globals.js';
export { ZipError } from './zip.js';
