"""Divergence / spike detection on synthetic loss logs."""
import math

from experiments.study import stability


def _rows(losses, every=10):
  return [{'step': every * (i + 1), 'loss': v} for i, v in enumerate(losses)]


def test_smooth_decrease_is_stable():
  result = stability.analyze(_rows([2.0 * 0.98**i for i in range(100)]))
  assert result['diverged'] is False and result['spiked'] is False
  assert result['num_rows'] == 100
  assert result['max_spike_ratio'] < 1.0
  assert result['first_loss'] == 2.0


def test_spike_above_three_times_window_median():
  losses = [1.0] * 30
  losses[20] = 3.5  # step 210 vs median 1.0 of steps 110..200
  result = stability.analyze(_rows(losses))
  assert result['spiked'] is True and result['spike_steps'] == [210]
  assert result['max_spike_ratio'] == 3.5
  assert result['diverged'] is False  # final 1.0 == first 1.0
  losses[20] = 2.9  # below 3x: not a spike
  assert stability.analyze(_rows(losses))['spiked'] is False


def test_window_is_the_preceding_100_steps():
  # Loss fell from 10 to 1 long ago; 2.5 at the end is not 3x the recent 1.0
  # median, and the old high values must not hide a real spike either.
  losses = [10.0] * 20 + [1.0] * 20 + [3.2]
  result = stability.analyze(_rows(losses))
  assert result['spike_steps'] == [410]
  # Too little history (fewer than 3 rows in the window): never a spike.
  assert stability.analyze(_rows([1.0, 1.0, 9.0]))['spiked'] is False


def test_divergence():
  rising = stability.analyze(_rows([1.0, 1.1, 1.2, 1.3]))
  assert rising['diverged'] is True and rising['spiked'] is False
  nan = stability.analyze(_rows([1.0, 0.9, 0.8, 0.7, math.nan]))
  assert nan['diverged'] is True and nan['non_finite'] is True
  assert nan['spiked'] is True and nan['final_loss'] is None
  inf = stability.analyze(_rows([1.0, math.inf, 0.5]))
  assert inf['diverged'] is True


def test_empty_log():
  result = stability.analyze([])
  assert result['diverged'] is None and result['spiked'] is None
  assert result['num_rows'] == 0


def test_definitions_name_the_thresholds():
  assert '3x' in stability.SPIKED_DEFINITION
  assert '100 steps' in stability.SPIKED_DEFINITION
  assert 'non-finite' in stability.DIVERGED_DEFINITION


def test_another_column_is_judged_on_its_own():
  rows = [{'step': 10 * i, 'loss': 1.0 + 0.1 * i, 'human_loss': 2.0 - 0.1 * i}
          for i in range(8)]
  assert stability.analyze(rows)['diverged'] is True
  human = stability.analyze(rows, column='human_loss')
  assert human['diverged'] is False
  assert human['first_loss'] == 2.0
