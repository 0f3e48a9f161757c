"""Application services over a secure session: enrolment on the device, its client on the host."""
