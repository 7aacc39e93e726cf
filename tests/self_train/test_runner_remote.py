"""`--mode=self_train` with its model_dir on ram:// (stands in for GCS)."""
import tensorflow as tf

from st_tf import main
from st_tf.export import saved_model
from st_tf.self_train import stages
from tests import ram
from tests.self_train import smoke



def test_smoke_pipeline_on_ram_runs_then_skips(tmp_path):
  # DigitScenes is made by local worker processes ("prepare" says so); the
  # pipeline's own outputs all go to ram://.
  data = str(tmp_path / 'data')
  # No test split: its evals are the val evals' code path again (covered
  # by test_runner.py), only slower.
  smoke.parse(data, 'self_train.baseline = False', *smoke.NO_TEST_SPLIT)
  model_dir = ram.folder('self_train')
  result = main.run('self_train', model_dir)
  student = f'{model_dir}/round_0/student'
  assert stages.final_step(student) == 4
  assert saved_model.is_complete(f'{student}/export/4')
  assert tf.io.gfile.exists(f'{model_dir}/summary.json')
  assert result['rounds'][0]['pseudo_labels']['images_out'] == 32
  again = main.run('self_train', model_dir)
  assert {s['status'] for s in again['stages']} == {'skipped'}
