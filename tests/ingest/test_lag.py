from confluent_kafka import KafkaError, KafkaException

from meterstream.ingest.lag import coordinator_not_ready


def test_coordinator_start_up_errors_are_waited_out() -> None:
    for code in (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                 KafkaError.COORDINATOR_NOT_AVAILABLE):  # fmt: skip
        assert coordinator_not_ready(KafkaException(KafkaError(code)))


def test_other_errors_are_not() -> None:
    assert not coordinator_not_ready(KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)))
    assert not coordinator_not_ready(KafkaException("no error object"))
