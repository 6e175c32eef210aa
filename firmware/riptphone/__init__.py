"""ript-phone: RIPT desk-phone firmware."""
