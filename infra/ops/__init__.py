"""Operations: doctor, metrics, logs, replay."""
