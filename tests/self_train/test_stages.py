"""Stage completion checks, the stage log and the summary report."""
import json
import os

import pytest
import tensorflow as tf

from st_tf.export import saved_model
from st_tf.pseudo_label import writer
from st_tf.self_train import stages
from st_tf.self_train import summary as summary_lib


def _checkpoint(model_dir, step):
  ckpt = tf.train.Checkpoint(step=tf.Variable(step, dtype=tf.int64))
  tf.train.CheckpointManager(ckpt, model_dir, max_to_keep=3).save(
      checkpoint_number=step)


def test_train_and_eval_complete_follow_the_final_checkpoint(tmp_path):
  d = str(tmp_path)
  assert not stages.train_complete(d) and not stages.eval_complete(d, d)
  _checkpoint(d, 5)
  assert not stages.train_complete(d)  # train has not returned yet
  assert stages.mark_trained(d)['step'] == 5
  assert stages.train_complete(d)
  stages.write_json(os.path.join(d, 'eval_metrics.json'),
                    {'step': 5, 'metrics': {'AP': 0.5}})
  assert stages.eval_complete(d, d)
  _checkpoint(d, 10)  # trained further: the old marker and eval are stale
  assert not stages.train_complete(d) and not stages.eval_complete(d, d)
  assert stages.export_dir_for(d) == os.path.join(d, 'export', '10')
  assert not stages.export_complete(d)
  os.makedirs(os.path.join(d, 'export', '10'))
  # saved_model.pb alone (e.g. an export half copied to GCS) is not enough.
  open(os.path.join(d, 'export', '10', 'saved_model.pb'), 'w').close()
  assert not stages.export_complete(d)
  saved_model._write_file_list(  # pylint: disable=protected-access
      os.path.join(d, 'export', '10'))
  assert stages.export_complete(d)


def _manifest(d, index, num, complete, images=4, boxes=6):
  writer.write_json(writer.manifest_path(d, index, num), {
      'task': 'detection', 'teacher_id': 't', 'num_shards': num,
      'complete': complete, 'totals': {
          'images_in': images, 'images_out': images,
          'labels_per_image': boxes / images if images else 0.0}})


def test_pseudo_labels_complete_needs_every_job_complete(tmp_path):
  d = str(tmp_path)
  assert not stages.pseudo_labels_complete(d)
  _manifest(d, 0, 2, True)
  assert not stages.pseudo_labels_complete(d)  # job 1 missing
  _manifest(d, 1, 2, False)
  assert not stages.pseudo_labels_complete(d)
  _manifest(d, 1, 2, True, images=5, boxes=2)
  assert stages.pseudo_labels_complete(d)
  stats = stages.pseudo_label_stats(d)
  assert (stats['images_out'], stats['labels']) == (9, 8)
  assert stats['labels_per_image'] == pytest.approx(8 / 9)


def test_stage_log_runs_once_and_keeps_times(tmp_path):
  done = []
  log = stages.StageLog(str(tmp_path))
  assert log.run('a', lambda: bool(done), lambda: done.append(1))
  assert not log.run('a', lambda: bool(done), lambda: done.append(1))
  assert done == [1]
  with pytest.raises(RuntimeError, match='stage b'):
    log.run('b', lambda: False, lambda: None)
  again = stages.StageLog(str(tmp_path))
  assert not again.run('a', lambda: True, lambda: None)
  assert again.table() == [{'name': 'a', 'status': 'skipped',
                            'seconds': log.records['a']['seconds']}]


def test_summary_markdown_reports_gain_baseline_and_times(tmp_path):
  pseudo = {'task': 'segmentation', 'images_in': 10, 'images_out': 9,
            'labels': 900, 'labels_per_image': 100.0}
  record = lambda v, s: {'step': s, 'metrics': {  # noqa
      'mean_iou': v, 'iou/0': v, 'iou/1': v / 2, 'iou/2': 0.0}}
  rounds = [
      summary_lib.round_entry(0, None, record(0.5, 4), 'mean_iou', pseudo, 4,
                              None),
      summary_lib.round_entry(1, record(0.5, 4), record(0.625, 4),
                              'mean_iou', pseudo, 4, '/x/export/4')]
  base = summary_lib.baseline_entry(record(0.5, 9), 'mean_iou', 9,
                                    expected_steps=8,
                                    final_student=rounds[-1]['student'])
  result = summary_lib.build('mean_iou', rounds, base,
                             [{'name': 's', 'seconds': 1.5, 'status': 'ran'}],
                             category_names={0: 'background', 1: 'road'})
  markdown = summary_lib.write(str(tmp_path), result)
  assert rounds[1]['gain'] == pytest.approx(0.125)
  assert ('| 0 | n/a | 0.5000 | n/a | 9/10 | 900 | 100.00 | n/a | 4 |'
          in markdown)
  assert '| 1 | 0.5000 | 0.6250 | +0.1250 |' in markdown
  assert 'pseudo pixels kept' in markdown
  assert '| 0.5000 | 9 (MISMATCH: expected 8) | +0.1250 |' in markdown
  assert '| s | 1.5 | ran |' in markdown
  with open(tmp_path / 'summary.json') as f:
    written = json.load(f)
  assert written['baseline']['steps_match'] is False
  # Per-class IoU keyed by name (class 2 has none: its id), every model.
  assert written['classes'] == {'0': 'background', '1': 'road', '2': '2'}
  assert written['baseline']['per_class'] == {
      'background': 0.5, 'road': 0.25, '2': 0.0}
  assert written['rounds'][1]['student']['per_class']['road'] == 0.3125
  assert written['rounds'][1]['teacher']['per_class']['road'] == 0.25
  assert '## Per-class IoU (val)' in markdown
  assert ('| id | class | round 0 student | round 1 student | baseline |'
          in markdown)
  assert '| 0 | background | 0.5000 | 0.6250 | 0.5000 |' in markdown
  assert '| 1 | road | 0.2500 | 0.3125 | 0.2500 |' in markdown
  assert '| 2 | 2 | 0.0000 | 0.0000 | 0.0000 |' in markdown


def test_summary_of_a_mean_teacher_round_has_its_ema_teacher(tmp_path):
  # Per-category AP of categories 1 and 3 (DigitScenes-like names).
  record = lambda v, s: {'step': s, 'metrics': {  # noqa
      'AP': v, 'AP/1': v, 'AP/3': v / 2}}
  pseudo = {'mode': 'mean_teacher', 'task': 'detection', 'images_in': None,
            'images_out': None, 'labels': None, 'labels_per_image': 2.5,
            'pseudo_loss': 0.75, 'score_threshold': 0.3,
            'quality': {'0.3': {'precision': 0.5, 'recall': 0.25}}}
  rounds = [summary_lib.round_entry(
      0, record(0.25, 8), record(0.375, 4), 'AP', pseudo, 4, None,
      mode='mean_teacher',
      extra={'ema_teacher': summary_lib.model_entry(record(0.5, 4), 'AP')})]
  base = summary_lib.baseline_entry(
      record(0.25, 12), 'AP', 12, expected_steps=12,
      final_student=rounds[0]['student'],
      final_ema_teacher=rounds[0]['ema_teacher'])
  assert rounds[0]['ema_gain'] == pytest.approx(0.25)
  assert base['ema_teacher_minus_baseline'] == pytest.approx(0.25)
  assert base['test_ema_teacher_minus_baseline'] is None
  result = summary_lib.build('AP', rounds, base, [],
                             category_names={1: '0', 2: '1', 3: '2'})
  markdown = summary_lib.to_markdown(result)
  assert ('| 0 | 0.2500 | 0.3750 | +0.1250 | n/a | n/a | 2.50 | 8 | 4 | n/a '
          '| n/a | n/a | mean_teacher |') in markdown
  assert ('| 0 | 0.5000 | +0.2500 | n/a | 0.3750 | 2.50 | 0.7500 | 0.5000 | '
          '0.2500 |') in markdown
  assert '| 0.2500 | 12 | +0.1250 | n/a | n/a | +0.2500 | n/a |' in markdown
  assert result['classes'] == {'1': '0', '3': '2'}
  assert result['rounds'][0]['ema_teacher']['per_class'] == {
      '0': 0.5, '2': 0.25}
  assert result['teacher'] is None  # Not given: no column.
  assert '## Per-class AP (val; COCO AP@[.5:.95] per category)' in markdown
  assert ('| id | class | round 0 student | round 0 EMA teacher | baseline |'
          in markdown)
  assert '| 1 | 0 | 0.3750 | 0.5000 | 0.2500 |' in markdown
  assert '| 3 | 2 | 0.1875 | 0.2500 | 0.1250 |' in markdown


def test_summary_class_keys_fall_back_to_ids_and_never_collide():
  assert summary_lib.class_keys([3, 7], {3: 'box'}) == {3: 'box', 7: '7'}
  # Class 2 has no name and class 3 is named '2': both keep their id.
  assert summary_lib.class_keys([1, 2, 3], {1: '0', 3: '2'}) == {
      1: '0', 2: '2 (id 2)', 3: '2 (id 3)'}
  assert summary_lib.class_values({'AP': 0.5, 'AP/7': 0.25, 'AP50': 1.0,
                                   'iou/1': 0.1}, 'AP/') == {7: 0.25}


def test_summary_without_per_class_metrics_has_no_class_table():
  record = {'step': 4, 'metrics': {'AP': 0.5}}  # An older eval record.
  base = summary_lib.baseline_entry(record, 'AP', 4, None, None)
  result = summary_lib.build('AP', [], base, [], teacher=summary_lib.
                             model_entry(record, 'AP'),
                             category_names={1: 'cat'})
  assert result['classes'] == {} and result['baseline']['per_class'] == {}
  assert 'Per-class' not in summary_lib.to_markdown(result)


def test_pseudo_labels_without_any_image_are_not_complete(tmp_path):
  # A complete manifest (as written before the empty-set check) whose shards
  # hold nothing: the student's input would match no record.
  _manifest(str(tmp_path), 0, 1, True, images=0, boxes=0)
  assert not stages.pseudo_labels_complete(str(tmp_path))


def test_torn_state_files_are_rebuilt_not_fatal(tmp_path):
  d = str(tmp_path)
  _checkpoint(d, 5)
  stages.mark_trained(d)
  stages.write_json(os.path.join(d, 'eval_metrics.json'), {'step': 5})
  stages.write_json(os.path.join(d, stages.STATE_FILE), {'a': {'seconds': 1}})
  for name in (stages.TRAIN_DONE_FILE, 'eval_metrics.json', stages.STATE_FILE):
    with open(os.path.join(d, name), 'w') as f:
      f.write('{"step": 5, "chec')  # A torn write.
  # Torn markers: the stage reruns (and rewrites them) instead of crashing.
  assert not stages.train_complete(d) and not stages.eval_complete(d, d)
  log = stages.StageLog(d)  # Torn stages.json: rebuilt, with a warning.
  assert log.records == {}
  done = []
  assert log.run('x', lambda: bool(done), lambda: done.append(1))
  assert set(stages.read_json(os.path.join(d, stages.STATE_FILE))) == {'x'}


def test_torn_manifest_of_a_job_is_not_complete(tmp_path):
  _manifest(str(tmp_path), 0, 1, True)
  with open(writer.manifest_path(str(tmp_path), 0, 1), 'w') as f:
    f.write('{"task": "detec')
  assert not stages.pseudo_labels_complete(str(tmp_path))
