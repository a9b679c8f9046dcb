"""A model host with one injected, retriable transaction failure, for recovery tests.

``python -m tests.integration.faulty_host host --model M --replica R --ready-file F`` (the
arguments of ``fedrift host``) runs ``ModelHost`` with the
settings from the environment; its first data transaction that commits while the host has paused
its labels fails with a timeout (as a broker kill or a slow coordinator would make it), so the
host aborts and recovers in-process.
"""

from __future__ import annotations

import argparse
import logging

from confluent_kafka import KafkaError, KafkaException

from agents.host import ModelHost
from fedrift.config import Settings

log = logging.getLogger(__name__)


class FaultyHost(ModelHost):
    injected = False
    in_data_batch = False

    def _transact(self, msgs) -> None:
        self.in_data_batch = True
        try:
            super()._transact(msgs)
        finally:
            self.in_data_batch = False

    def _txn(self, call, *args):  # type: ignore[override]
        if self.in_data_batch and self.labels_paused and not self.injected and call == self.producer.commit_transaction:
            self.injected = True
            log.warning("injected: commit_transaction timed out while labels are paused")
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "injected"))
        return ModelHost._txn(call, *args)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["host"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--replica", type=int, required=True)
    ap.add_argument("--ready-file", required=True)
    args = ap.parse_args()
    FaultyHost(Settings.from_env(), args.model, args.replica).run(ready_file=args.ready_file)
