"""`pyambient demo`: a whole ambient mesh on one machine, walked through scenario by scenario."""
