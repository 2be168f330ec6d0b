// Pascal-5i (docs/method.md#evaluation): VOC2012 JPEGs with the SBD-augmented SegmentationClassAug masks, and the
// standard HSNet/VAT split lists shipped in data/pascal5i-splits/. Fold k holds classes 5k+1..5k+5:
// trn/fold<k> and val/fold<k> both list (image, class) pairs of those five classes, on VOC/SBD
// training and validation images respectively. (A few-shot learner trains on the other folds' trn
// lists; VTV's scripts read trn/fold<k> of the very fold they search (docs/method.md#search), and evaluate on val.)
import { join } from 'node:path';
import { ListSegmentationDataset } from './list-dataset.js';
import { packageDataDir } from './paths.js';

export const VOC_CLASSES = [
  'aeroplane',
  'bicycle',
  'bird',
  'boat',
  'bottle',
  'bus',
  'car',
  'cat',
  'chair',
  'cow',
  'diningtable',
  'dog',
  'horse',
  'motorbike',
  'person',
  'pottedplant',
  'sheep',
  'sofa',
  'train',
  'tvmonitor',
] as const;

export interface Pascal5iOptions {
  /** Folder holding VOCdevkit/ (the reference's --data_path). */
  base: string;
  /** Split lists folder; defaults to the copy shipped in the package. */
  splitDir?: string;
}

export function openPascal5i(opts: Pascal5iOptions): ListSegmentationDataset {
  const voc = join(opts.base, 'VOCdevkit', 'VOC2012');
  return new ListSegmentationDataset({
    name: 'pascal5i',
    classes: VOC_CLASSES,
    folds: 4,
    imageDir: join(voc, 'JPEGImages'),
    imageExt: '.jpg',
    labelDir: join(voc, 'SegmentationClassAug'),
    splitDir: opts.splitDir ?? join(packageDataDir(), 'pascal5i-splits'),
    layout:
      '<base>/VOCdevkit/VOC2012/JPEGImages/<id>.jpg and <base>/VOCdevkit/VOC2012/SegmentationClassAug/<id>.png ' +
      '(SBD-augmented masks, pixel value = class id), split lists <splitDir>/{trn,val}/fold{0..3}.txt',
  });
}
