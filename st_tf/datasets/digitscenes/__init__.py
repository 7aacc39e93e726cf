"""DigitScenes: the bundled default dataset (handwritten digits in scenes).

* `render`: drawing scenes and single-digit crops (numpy + PIL only);
* `scenes`: the detection + segmentation splits (layouts v1, v2) and
  `ensure_digitscenes` (gin, for `prepare.fns`);
* `classification`: single-digit crops of the train pool for backbone
  pre-training and `ensure_digitscenes_classification` (gin);
* `common`: what `scenes` and `classification` share (split checks, source
  ids, per-item seeding, file patterns, sharded writing, metadata files).
"""
